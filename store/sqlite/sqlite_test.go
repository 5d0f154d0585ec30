package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/store/storetest"
)

// helperEnv, when set to a path, makes the test binary open that store
// and exit: 3 when it is locked, 0 when it opened, 1 on other errors.
const helperEnv = "WEFT_SQLITE_OPEN_HELPER"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(openAndExit(path))
	}

	os.Exit(m.Run())
}

// openAndExit opens the store at path for another process's test.
func openAndExit(path string) int {
	s, err := sqlite.Open(context.Background(), path)
	switch {
	case errors.Is(err, store.ErrLocked):
		fmt.Println(err)

		return 3
	case err != nil:
		fmt.Println(err)

		return 1
	}

	if err := s.Close(); err != nil {
		fmt.Println(err)

		return 1
	}

	return 0
}

// openTemp opens a store on a new file in the test's temporary folder.
func openTemp(t testing.TB, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()

	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "weft.db"), opts...)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}

	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing store: %v", err)
		}
	})

	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTemp(t)
	})
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}

	_, err = sqlite.Open(t.Context(), path)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: error = %v, want ErrLocked", err)
	}

	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another weft process") {
		t.Fatalf("second open: error %q does not name the file and the other process", err)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("closing store: %v", err)
	}

	again, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("opening after close: %v", err)
	}

	if err := again.Close(); err != nil {
		t.Fatalf("closing store: %v", err)
	}
}

func TestOtherProcessIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}

	code, out := openInOtherProcess(t, path)
	if code != 3 || !strings.Contains(out, path) {
		t.Fatalf("other process: exit code %d, output %q; want 3 and the file named", code, out)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("closing store: %v", err)
	}

	if code, out := openInOtherProcess(t, path); code != 0 {
		t.Fatalf("other process after close: exit code %d, output %q", code, out)
	}
}

// openInOtherProcess runs this test binary as a helper that opens path,
// and returns its exit code and output.
func openInOtherProcess(t *testing.T, path string) (int, string) {
	t.Helper()

	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}

	if err != nil {
		t.Fatalf("running helper process: %v", err)
	}

	return 0, string(out)
}

func TestNodes(t *testing.T) {
	storetest.Nodes(t, func(t *testing.T) (store.Store, store.Store) {
		s := openTemp(t)

		return s, s
	})
}

// TestFeedNodes runs the feed's concurrent part on one store: SQLite's
// one writer commits in the order it begins, so there is nothing to hold.
func TestFeedNodes(t *testing.T) {
	storetest.FeedNodes(t, func(t *testing.T) (store.Store, store.Store) {
		s := openTemp(t)

		return s, s
	}, nil)
}

// TestOpenThroughLinkIsLocked opens one file through a symbolic link
// while it is open under its own name: the lock follows the file.
func TestOpenThroughLinkIsLocked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })

	link := filepath.Join(dir, "b.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(t.Context(), link); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("open through a link: error = %v, want ErrLocked", err)
	}
}
