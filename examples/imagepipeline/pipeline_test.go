package imagepipeline_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/weftworks/weft/examples/imagepipeline"
	"github.com/weftworks/weft/examples/imagepipeline/photos"
	"github.com/weftworks/weft/examples/imagepipeline/picture"
	"github.com/weftworks/weft/examples/imagepipeline/summary"
)

// TestPipelineOnRealPhotos runs the three steps on every committed photo
// and on the landscape fetched from the module proxy, checks each row
// against photos.md and prints the table.
func TestPipelineOnRealPhotos(t *testing.T) {
	want := map[string]summary.Row{
		"pigo-sample.jpg":          {Faces: 1},
		"skimage-astronaut.png":    {Faces: 1},
		"goexif-has-lens-info.jpg": {Camera: "Apple iPhone 4S", Taken: "2014-09-01 15:03:47", GPS: "59.33255,18.06494"},
		"goexif-sample1.jpg":       {Camera: "NIKON D2H", Taken: "2003-11-23 18:07:37", GPS: "39.91556,116.39083"},
		"imagemeta-sunrise.jpg":    {Camera: "PENTAX K-3 II", Taken: "2017-10-27 08:38:52", GPS: "36.59744,-4.50846"},
	}

	out := t.TempDir()
	var in summary.Input
	for _, p := range photos.Select(func(p photos.Photo) bool { return !p.Group() }) {
		path, err := photos.Path(context.Background(), p, "testdata")
		if err != nil {
			t.Fatal(err)
		}

		res, err := imagepipeline.Process(context.Background(), imagepipeline.Input{Path: path, OutDir: out})
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		in.Photos = append(in.Photos, res)
	}

	table, err := summary.Summarize(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}

	if table.Photos != len(want) {
		t.Errorf("table has %d photos, want %d", table.Photos, len(want))
	}
	for _, row := range table.Rows {
		checkRow(t, row, want[row.Photo])
	}

	var text strings.Builder
	if err := table.Write(&text); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + text.String())
}

func checkRow(t *testing.T, got, want summary.Row) {
	t.Helper()

	if got.Camera != want.Camera || got.Taken != want.Taken || got.GPS != want.GPS || got.Faces != want.Faces {
		t.Errorf("%s: %+v, want camera %q taken %q GPS %q faces %d",
			got.Photo, got, want.Camera, want.Taken, want.GPS, want.Faces)
	}

	if _, err := os.Stat(got.Thumbnail); err != nil {
		t.Errorf("%s: thumbnail: %v", got.Photo, err)
		return
	}
	img, err := picture.Load(got.Thumbnail)
	if err != nil {
		t.Errorf("%s: thumbnail: %v", got.Photo, err)
		return
	}
	if b := img.Bounds(); max(b.Dx(), b.Dy()) > 256 {
		t.Errorf("%s: thumbnail is %dx%d, want at most 256 px", got.Photo, b.Dx(), b.Dy())
	}
}
