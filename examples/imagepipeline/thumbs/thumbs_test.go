package thumbs_test

import (
	"context"
	"errors"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"testing"

	"github.com/weftworks/weft/examples/imagepipeline/faces"
	"github.com/weftworks/weft/examples/imagepipeline/picture"
	"github.com/weftworks/weft/examples/imagepipeline/thumbs"
)

func makeThumb(t *testing.T, in thumbs.Input) (thumbs.Result, image.Image) {
	t.Helper()

	res, err := thumbs.Make(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}

	img, err := picture.Load(res.Path)
	if err != nil {
		t.Fatalf("reading the thumbnail back: %v", err)
	}
	if b := img.Bounds(); b.Dx() != res.Width || b.Dy() != res.Height {
		t.Errorf("thumbnail is %dx%d, result says %dx%d", b.Dx(), b.Dy(), res.Width, res.Height)
	}
	return res, img
}

func TestSizes(t *testing.T) {
	tests := []struct {
		photo string
		size  int
		w, h  int
	}{
		{"pigo-sample.jpg", 0, 205, 256},
		{"skimage-astronaut.png", 0, 256, 256},
		{"goexif-sample1.jpg", 0, 256, 192},
		{"goexif-sample1.jpg", 100, 100, 75},
		// Stored 205x102 with orientation 6: upright it stands 102x205,
		// smaller than the thumbnail, so it keeps its size.
		{"goexif-has-lens-info.jpg", 0, 102, 205},
	}

	for _, tt := range tests {
		in := thumbs.Input{Path: filepath.Join("../testdata", tt.photo), OutDir: t.TempDir(), Size: tt.size}
		res, _ := makeThumb(t, in)
		if res.Width != tt.w || res.Height != tt.h {
			t.Errorf("%s at %d: %dx%d, want %dx%d", tt.photo, tt.size, res.Width, res.Height, tt.w, tt.h)
		}
		if filepath.Dir(res.Path) != in.OutDir {
			t.Errorf("thumbnail written to %s, want inside %s", res.Path, in.OutDir)
		}
	}
}

// marked returns a 300x200 grey image with a red block in its top-left
// corner and a green one in its bottom-right corner.
func marked() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, 300, 200))
	for y := range 200 {
		for x := range 300 {
			c := color.RGBA{128, 128, 128, 255}
			switch {
			case x < 60 && y < 60:
				c = color.RGBA{255, 0, 0, 255}
			case x >= 240 && y >= 140:
				c = color.RGBA{0, 255, 0, 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

// TestHonoursOrientation stores the marked image turned and records the
// turn in EXIF: every thumbnail must come out upright.
func TestHonoursOrientation(t *testing.T) {
	undo := map[int]int{0: 0, 90: 8, 180: 3, 270: 6}

	for deg, orientation := range undo {
		turned, err := picture.Rotate(marked(), deg)
		if err != nil {
			t.Fatal(err)
		}

		path := filepath.Join(t.TempDir(), "marked.jpg")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := picture.EncodeJPEG(f, turned, orientation); err != nil {
			t.Fatal(err)
		}
		f.Close()

		res, img := makeThumb(t, thumbs.Input{Path: path, OutDir: t.TempDir(), Size: 150})
		if res.Width != 150 || res.Height != 100 {
			t.Errorf("turned %d: %dx%d, want 150x100", deg, res.Width, res.Height)
		}
		if !alike(img.At(10, 10), color.RGBA{255, 0, 0, 255}) ||
			!alike(img.At(140, 90), color.RGBA{0, 255, 0, 255}) {
			t.Errorf("turned %d: corners %v and %v, want red top-left and green bottom-right",
				deg, img.At(10, 10), img.At(140, 90))
		}
	}
}

func TestDrawsBoxes(t *testing.T) {
	// A box on the portrait's face, in pixels of the 320x400 photo; the
	// thumbnail is 205x256, so it lands at about 32,64 sized 128.
	box := faces.Box{X: 50, Y: 100, W: 200, H: 200, Score: 50}
	res, img := makeThumb(t, thumbs.Input{
		Path: "../testdata/pigo-sample.jpg", OutDir: t.TempDir(), Boxes: []faces.Box{box},
	})

	if len(res.Boxes) != 1 {
		t.Fatalf("drew %d boxes, want 1", len(res.Boxes))
	}
	r := res.Boxes[0]
	if r.X != 32 || r.Y != 64 || r.W != 128 || r.H != 128 {
		t.Errorf("box drawn at %+v, want 32,64 128x128", r)
	}

	edges := []image.Point{
		{r.X + r.W/2, r.Y}, {r.X + r.W/2, r.Y + r.H - 1},
		{r.X, r.Y + r.H/2}, {r.X + r.W - 1, r.Y + r.H/2},
	}
	for _, p := range edges {
		if !alike(img.At(p.X, p.Y), thumbs.BoxColor) {
			t.Errorf("pixel %v on the box edge is %v, want the box colour", p, img.At(p.X, p.Y))
		}
	}
	if mid := img.At(r.X+r.W/2, r.Y+r.H/2); alike(mid, thumbs.BoxColor) {
		t.Errorf("the box's middle is %v: only its outline should be drawn", mid)
	}

	_, plain := makeThumb(t, thumbs.Input{Path: "../testdata/pigo-sample.jpg", OutDir: t.TempDir()})
	if alike(plain.At(edges[0].X, edges[0].Y), thumbs.BoxColor) {
		t.Error("the thumbnail without boxes has the box colour where the edge would be")
	}
}

// alike reports whether two colours differ by less than 60 in each
// channel, the slack JPEG compression needs.
func alike(a, b color.Color) bool {
	ar, ag, ab, _ := a.RGBA()
	br, bg, bb, _ := b.RGBA()
	d := func(x, y uint32) bool { return int(x>>8)-int(y>>8) < 60 && int(y>>8)-int(x>>8) < 60 }
	return d(ar, br) && d(ag, bg) && d(ab, bb)
}

func TestBadInput(t *testing.T) {
	photo := "../testdata/pigo-sample.jpg"
	tests := []struct {
		name string
		in   thumbs.Input
	}{
		{"no path", thumbs.Input{OutDir: "out"}},
		{"no out_dir", thumbs.Input{Path: photo}},
		{"size too small", thumbs.Input{Path: photo, OutDir: "out", Size: 4}},
		{"empty box", thumbs.Input{Path: photo, OutDir: "out", Boxes: []faces.Box{{X: 1, Y: 1}}}},
		{"box outside", thumbs.Input{Path: photo, OutDir: "out", Boxes: []faces.Box{{X: 900, Y: 900, W: 9, H: 9}}}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.in.OutDir != "" {
				tt.in.OutDir = filepath.Join(dir, tt.in.OutDir)
			}

			_, err := thumbs.Make(context.Background(), tt.in)
			if !errors.Is(err, thumbs.ErrInput) {
				t.Errorf("err = %v, want ErrInput", err)
			}
			if tt.in.OutDir != "" {
				if _, err := os.Stat(tt.in.OutDir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("out_dir was created for a refused input")
				}
			}
		})
	}
}
