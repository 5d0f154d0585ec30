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

func TestFetchEveryPhotoFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches from three registries")
	}

	dir := t.TempDir()
	damaged := filepath.Join(dir, "pigo-sample.jpg")
	if err := os.WriteFile(damaged, []byte("not a photo"), 0o644); err != nil {
		t.Fatal(err)
	}

	paths, err := photos.Fetch(context.Background(), dir, photos.Catalog)
	if errors.Is(err, photos.ErrNoTool) {
		t.Skipf("cannot fetch every photo on this machine: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}

	for i, p := range photos.Catalog {
		if err := photos.Verify(paths[i], p); err != nil {
			t.Error(err)
		}
	}

	leftovers, _ := filepath.Glob(filepath.Join(dir, "*.part"))
	if len(leftovers) != 0 {
		t.Errorf("partial files left behind: %v", leftovers)
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
