package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// definitions caches compiled graphs by name and version; the store
// holds the sources, so the cache can always be rebuilt.
type definitions struct {
	store store.Store

	mu     sync.RWMutex
	graphs map[defKey]*definition.Graph
}

type defKey struct {
	name    string
	version int
}

func newDefinitions(st store.Store) *definitions {
	return &definitions{store: st, graphs: map[defKey]*definition.Graph{}}
}

// graph returns the compiled graph of one version.
func (d *definitions) graph(ctx context.Context, name string, version int) (*definition.Graph, error) {
	key := defKey{name, version}
	d.mu.RLock()
	g, ok := d.graphs[key]
	d.mu.RUnlock()
	if ok {
		return g, nil
	}

	rec, err := d.store.DefinitionGet(ctx, name, version)
	if err != nil {
		return nil, err
	}

	return d.compile(rec)
}

// compiled returns the graph of a stored definition, from the cache when
// it is there.
func (d *definitions) compiled(rec store.Definition) (*definition.Graph, error) {
	d.mu.RLock()
	g, ok := d.graphs[defKey{rec.Name, rec.Version}]
	d.mu.RUnlock()
	if ok {
		return g, nil
	}

	return d.compile(rec)
}

func (d *definitions) compile(rec store.Definition) (*definition.Graph, error) {
	def, err := definition.Parse(rec.Source)
	if err != nil {
		return nil, fmt.Errorf("parsing stored definition %s v%d: %w", rec.Name, rec.Version, err)
	}

	g, err := definition.Compile(def)
	if err != nil {
		return nil, fmt.Errorf("compiling stored definition %s v%d: %w", rec.Name, rec.Version, err)
	}

	d.mu.Lock()
	d.graphs[defKey{rec.Name, rec.Version}] = g
	d.mu.Unlock()

	return g, nil
}

// newest returns the newest active version of a definition.
func (d *definitions) newest(ctx context.Context, name string) (*definition.Graph, error) {
	recs, err := d.store.DefinitionList(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("listing definition %s: %w", name, err)
	}

	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Status == store.DefinitionActive {
			return d.graph(ctx, name, recs[i].Version)
		}
	}

	if len(recs) > 0 {
		return nil, fmt.Errorf("definition %s: every version is %w", name, store.ErrDeprecated)
	}

	return nil, fmt.Errorf("definition %s: %w", name, store.ErrNotFound)
}

// RegisterDefinition parses, validates and stores a definition written
// in YAML or JSON. A (name, version) that exists already is refused with
// store.ErrAlreadyExists unless its source is the same. Every service its
// task steps name must be known first (see ValidateDefinition).
func (e *Engine) RegisterDefinition(ctx context.Context, src []byte) (*definition.Definition, error) {
	def, g, err := e.ValidateDefinition(ctx, src)
	if err != nil {
		return nil, err
	}

	canon, err := definition.Canonical(def)
	if err != nil {
		return nil, fmt.Errorf("encoding definition: %w", err)
	}

	rec := store.Definition{
		Name:      def.Name,
		Version:   def.Version,
		Source:    canon,
		Status:    store.DefinitionActive,
		CreatedAt: e.clock.Now(),
	}
	err = e.store.DefinitionCreate(ctx, rec)
	if errors.Is(err, store.ErrAlreadyExists) {
		old, gerr := e.store.DefinitionGet(ctx, def.Name, def.Version)
		if gerr == nil && string(old.Source) == string(canon) {
			return def, nil
		}
		return nil, fmt.Errorf("definition %s v%d: %w with other content", def.Name, def.Version, err)
	}
	if err != nil {
		return nil, fmt.Errorf("storing definition: %w", err)
	}

	e.defs.mu.Lock()
	e.defs.graphs[defKey{def.Name, def.Version}] = g
	e.defs.mu.Unlock()

	return def, nil
}

// ValidateDefinition parses and compiles a definition without storing
// it; the error lists every fault with its path. A task step may name
// only a known service: one in the registry (RegisterService) or one
// with a Go handler in this engine (Handle).
func (e *Engine) ValidateDefinition(
	ctx context.Context, src []byte,
) (*definition.Definition, *definition.Graph, error) {
	def, err := definition.Parse(src)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	known, err := e.knownServices(ctx)
	if err != nil {
		return nil, nil, err
	}

	g, err := definition.CompileWith(def, definition.CompileOptions{KnownService: known})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	return def, g, nil
}

// DeprecateDefinition stops new starts of a version.
func (e *Engine) DeprecateDefinition(ctx context.Context, name string, version int) error {
	err := e.store.DefinitionSetStatus(ctx, name, version, store.DefinitionDeprecated)
	if err != nil {
		return err
	}

	return nil
}

// DeleteDefinition removes a version. It is refused with store.ErrInUse
// while any instance of the version is stored, finished or not, so that
// (name, version) always names the content its instances ran.
func (e *Engine) DeleteDefinition(ctx context.Context, name string, version int) error {
	if err := e.store.DefinitionDelete(ctx, name, version); err != nil {
		return err
	}

	e.defs.mu.Lock()
	delete(e.defs.graphs, defKey{name, version})
	e.defs.mu.Unlock()

	return nil
}
