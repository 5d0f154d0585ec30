package summary_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/weftworks/weft/examples/imagepipeline/exif"
	"github.com/weftworks/weft/examples/imagepipeline/faces"
	"github.com/weftworks/weft/examples/imagepipeline/summary"
	"github.com/weftworks/weft/examples/imagepipeline/thumbs"
)

func TestSummarize(t *testing.T) {
	in := summary.Input{Photos: []summary.Photo{
		{
			Path: "/photos/sunrise.jpg",
			EXIF: exif.Result{
				HasEXIF: true, Camera: "PENTAX K-3 II", Taken: "2017-10-27 08:38:52",
				GPS: &exif.GPS{Lat: 36.597441, Lon: -4.50846},
			},
			Thumb: thumbs.Result{Path: "/out/sunrise.thumb.jpg"},
		},
		{
			Path:  "/photos/astronaut.png",
			Faces: faces.Result{Count: 1, Boxes: []faces.Box{{X: 1, Y: 2, W: 3, H: 3}}},
			Thumb: thumbs.Result{Path: "/out/astronaut.thumb.jpg"},
		},
	}}

	got, err := summary.Summarize(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}

	want := []summary.Row{
		{Photo: "astronaut.png", Faces: 1, Thumbnail: "/out/astronaut.thumb.jpg"},
		{
			Photo: "sunrise.jpg", Camera: "PENTAX K-3 II", Taken: "2017-10-27 08:38:52",
			GPS: "36.59744,-4.50846", Thumbnail: "/out/sunrise.thumb.jpg",
		},
	}
	if len(got.Rows) != len(want) || got.Rows[0] != want[0] || got.Rows[1] != want[1] {
		t.Errorf("rows = %+v, want %+v", got.Rows, want)
	}
	if got.Photos != 2 || got.Faces != 1 || got.WithGPS != 1 {
		t.Errorf("totals %d photos %d faces %d with GPS, want 2 1 1", got.Photos, got.Faces, got.WithGPS)
	}

	var out strings.Builder
	if err := got.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"PHOTO", "astronaut.png  -", "36.59744,-4.50846", "2 photos, 1 faces, 1 with GPS"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
}

func TestSummarizeRefusesPhotoWithoutPath(t *testing.T) {
	in := summary.Input{Photos: []summary.Photo{{Path: "a.jpg"}, {}}}

	_, err := summary.Summarize(context.Background(), in)
	if !errors.Is(err, summary.ErrInput) || !strings.Contains(err.Error(), "photos[1].path") {
		t.Errorf("err = %v, want ErrInput naming photos[1].path", err)
	}
}
