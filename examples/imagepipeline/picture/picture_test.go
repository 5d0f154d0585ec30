package picture_test

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"testing"

	"github.com/bep/imagemeta"

	"github.com/weftworks/weft/examples/imagepipeline/picture"
)

// corner returns a 3x2 grey image whose top-left pixel is red.
func corner() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for y := range 2 {
		for x := range 3 {
			img.Set(x, y, color.RGBA{100, 100, 100, 255})
		}
	}
	img.Set(0, 0, color.RGBA{255, 0, 0, 255})
	return img
}

// TestUpright follows the stored top-left pixel through each EXIF
// orientation to where the upright image shows it.
func TestUpright(t *testing.T) {
	tests := []struct {
		orientation int
		w, h        int
		red         image.Point
	}{
		{1, 3, 2, image.Pt(0, 0)},
		{2, 3, 2, image.Pt(2, 0)},
		{3, 3, 2, image.Pt(2, 1)},
		{4, 3, 2, image.Pt(0, 1)},
		{5, 2, 3, image.Pt(0, 0)},
		{6, 2, 3, image.Pt(1, 0)},
		{7, 2, 3, image.Pt(1, 2)},
		{8, 2, 3, image.Pt(0, 2)},
		{0, 3, 2, image.Pt(0, 0)},
	}

	for _, tt := range tests {
		got := picture.Upright(corner(), tt.orientation)
		b := got.Bounds()
		if b.Dx() != tt.w || b.Dy() != tt.h {
			t.Errorf("orientation %d: %dx%d, want %dx%d", tt.orientation, b.Dx(), b.Dy(), tt.w, tt.h)
			continue
		}
		if r, _, _, _ := got.At(tt.red.X, tt.red.Y).RGBA(); r>>8 != 255 {
			t.Errorf("orientation %d: red pixel not at %v", tt.orientation, tt.red)
		}
	}
}

func TestRotateRefusesOtherAngles(t *testing.T) {
	if _, err := picture.Rotate(corner(), 45); err == nil {
		t.Error("Rotate by 45 degrees succeeded, want an error")
	}
}

func TestFit(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 1000, 500))

	small, f := picture.Fit(img, 640)
	if b := small.Bounds(); b.Dx() != 640 || b.Dy() != 320 || f != 0.64 {
		t.Errorf("Fit to 640: %v by %g, want 640x320 by 0.64", b, f)
	}
	if same, f := picture.Fit(img, 2000); same != image.Image(img) || f != 1 {
		t.Errorf("Fit to 2000 changed the image (factor %g)", f)
	}
}

// TestEncodeJPEGOrientation checks that the orientation tag written is
// read back by the EXIF library the exif step uses.
func TestEncodeJPEGOrientation(t *testing.T) {
	var buf bytes.Buffer
	if err := picture.EncodeJPEG(&buf, corner(), 6); err != nil {
		t.Fatal(err)
	}

	var got any
	_, err := imagemeta.Decode(imagemeta.Options{
		R: bytes.NewReader(buf.Bytes()), ImageFormat: imagemeta.JPEG, Sources: imagemeta.EXIF,
		HandleTag: func(ti imagemeta.TagInfo) error {
			if ti.Tag == "Orientation" {
				got = ti.Value
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != uint16(6) {
		t.Errorf("orientation read back %v, want 6", got)
	}

	if format, err := picture.Sniff(buf.Bytes()); format != picture.JPEG || err != nil {
		t.Errorf("Sniff = %q, %v; want jpeg", format, err)
	}
	if _, err := picture.Sniff([]byte("plain text")); !errors.Is(err, picture.ErrFormat) {
		t.Errorf("Sniff of text: err %v, want ErrFormat", err)
	}
}
