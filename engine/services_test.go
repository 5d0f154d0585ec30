package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// TestDefinitionNamesKnownServices: a definition may name a service of
// the registry or one with a Go handler; any other is refused with the
// step's path, its id and the service, and nothing is stored.
func TestDefinitionNamesKnownServices(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "weft.db"))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })

	e := engine.New(st, fastOptions())
	src := []byte(`
name: known
version: 1
steps:
  - {id: local, type: task, service: inproc, action: run}
  - {id: far, type: task, service: elsewhere, action: run}
`)

	_, err = e.RegisterDefinition(ctx, src)
	var verr *definition.ValidationError
	if !errors.Is(err, engine.ErrInvalid) || !errors.As(err, &verr) {
		t.Fatalf("register with no services = %v, want a validation error", err)
	}

	var paths []string
	for _, f := range verr.Faults {
		paths = append(paths, f.Path)
	}

	if strings.Join(paths, " ") != "steps[0].service steps[1].service" ||
		!strings.Contains(verr.Faults[1].Message, `step "far" names unknown service "elsewhere"`) {
		t.Fatalf("faults = %v, want both steps named", verr.Faults)
	}

	if _, err := st.DefinitionGet(ctx, "known", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused definition stored: %v", err)
	}

	e.Handle("inproc", "run", func(context.Context, engine.Task) (any, error) { return nil, nil })
	_, err = e.RegisterService(ctx, store.Service{Name: "elsewhere", Mode: store.ServicePull})
	if err != nil {
		t.Fatalf("registering service: %v", err)
	}

	if _, err := e.RegisterDefinition(ctx, src); err != nil {
		t.Fatalf("register with both known: %v", err)
	}

	if _, err := e.RegisterService(ctx, store.Service{Name: "bad name"}); !errors.Is(err,
		store.ErrInvalid) {
		t.Fatalf("bad service = %v, want store.ErrInvalid", err)
	}
}
