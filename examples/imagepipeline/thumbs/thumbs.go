// Package thumbs is the thumbs step of the image pipeline: it makes a
// JPEG thumbnail of a photo, upright according to its EXIF orientation,
// with the face boxes the faces step found drawn on it.
package thumbs

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/image/draw"

	"github.com/weftworks/weft/examples/imagepipeline/exif"
	"github.com/weftworks/weft/examples/imagepipeline/faces"
	"github.com/weftworks/weft/examples/imagepipeline/picture"
)

// DefaultSize is the longest side of a thumbnail when Input.Size is 0.
const DefaultSize = 256

// BoxColor is the colour face boxes are drawn in.
var BoxColor = color.RGBA{R: 255, G: 0, B: 255, A: 255}

// ErrInput reports an input field that is missing or out of range.
var ErrInput = errors.New("invalid input")

// Input is what the thumbs step reads.
type Input struct {
	// Path is the photo's file, JPEG or PNG.
	Path string `json:"path"`
	// OutDir is the folder the thumbnail is written to; it is created if
	// missing.
	OutDir string `json:"out_dir"`
	// Size is the thumbnail's longest side in pixels; 0 means
	// DefaultSize. A photo smaller than Size keeps its size.
	Size int `json:"size,omitempty"`
	// Boxes are the faces to draw, in pixels of the upright photo at full
	// size, as faces.Detect returns them.
	Boxes []faces.Box `json:"boxes,omitempty"`
}

// Result is what the thumbs step returns.
type Result struct {
	// Path is the thumbnail's file: OutDir, the photo's base name and
	// ".thumb.jpg".
	Path string `json:"path"`
	// Width and Height are the thumbnail's size in pixels.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Boxes are the face boxes as drawn, in thumbnail pixels.
	Boxes []faces.Box `json:"boxes"`
}

func (in Input) check() error {
	switch {
	case in.Path == "":
		return fmt.Errorf("path: %w: required", ErrInput)
	case in.OutDir == "":
		return fmt.Errorf("out_dir: %w: required", ErrInput)
	case in.Size < 0 || (in.Size > 0 && in.Size < 16):
		return fmt.Errorf("size: %w: %d, want 0 or at least 16", ErrInput, in.Size)
	}

	for i, b := range in.Boxes {
		if b.W <= 0 || b.H <= 0 || b.X < 0 || b.Y < 0 {
			return fmt.Errorf("boxes[%d]: %w: %+v, want a positive size inside the photo",
				i, ErrInput, b)
		}
	}
	return nil
}

// Make writes the thumbnail of the photo in.Path with in.Boxes drawn.
func Make(ctx context.Context, in Input) (Result, error) {
	if err := in.check(); err != nil {
		return Result{}, err
	}

	upright, err := exif.LoadUpright(ctx, in.Path)
	if err != nil {
		return Result{}, err
	}

	size := in.Size
	if size == 0 {
		size = DefaultSize
	}
	thumb, factor := scale(upright, size)

	res := Result{Width: thumb.Bounds().Dx(), Height: thumb.Bounds().Dy(), Boxes: []faces.Box{}}
	for i, b := range in.Boxes {
		r := scaleRect(b.Rect(), factor).Intersect(thumb.Bounds())
		if r.Empty() {
			return Result{}, fmt.Errorf("boxes[%d]: %w: %+v lies outside the photo", i, ErrInput, b)
		}
		drawBox(thumb, r, max(2, max(res.Width, res.Height)/128))
		drawn := faces.Box{X: r.Min.X, Y: r.Min.Y, W: r.Dx(), H: r.Dy(), Score: b.Score}
		res.Boxes = append(res.Boxes, drawn)
	}

	res.Path, err = write(thumb, in)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// scale resizes img so that its longest side is size, with CatmullRom
// resampling, and returns the factor used; a smaller image keeps its size.
func scale(img image.Image, size int) (*image.RGBA, float64) {
	b := img.Bounds()
	f := math.Min(1, float64(size)/float64(max(b.Dx(), b.Dy())))
	w := max(1, int(math.Round(float64(b.Dx())*f)))
	h := max(1, int(math.Round(float64(b.Dy())*f)))

	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	return dst, f
}

func scaleRect(r image.Rectangle, f float64) image.Rectangle {
	at := func(v int) int { return int(math.Round(float64(v) * f)) }
	return image.Rect(at(r.Min.X), at(r.Min.Y), at(r.Max.X), at(r.Max.Y))
}

// drawBox draws the outline of r, thick pixels wide, inside r.
func drawBox(img *image.RGBA, r image.Rectangle, thick int) {
	c := image.NewUniform(BoxColor)
	t := min(thick, r.Dx()/2, r.Dy()/2)
	t = max(t, 1)

	sides := []image.Rectangle{
		image.Rect(r.Min.X, r.Min.Y, r.Max.X, r.Min.Y+t),
		image.Rect(r.Min.X, r.Max.Y-t, r.Max.X, r.Max.Y),
		image.Rect(r.Min.X, r.Min.Y, r.Min.X+t, r.Max.Y),
		image.Rect(r.Max.X-t, r.Min.Y, r.Max.X, r.Max.Y),
	}
	for _, s := range sides {
		draw.Draw(img, s, c, image.Point{}, draw.Src)
	}
}

// write encodes the thumbnail into in.OutDir and returns its path.
func write(thumb image.Image, in Input) (string, error) {
	if err := os.MkdirAll(in.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("creating out_dir: %w", err)
	}

	base := strings.TrimSuffix(filepath.Base(in.Path), filepath.Ext(in.Path))
	path := filepath.Join(in.OutDir, base+".thumb.jpg")
	tmp, err := os.CreateTemp(in.OutDir, base+".*.part")
	if err != nil {
		return "", fmt.Errorf("creating thumbnail: %w", err)
	}
	defer os.Remove(tmp.Name())

	if err := picture.EncodeJPEG(tmp, thumb, 0); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing thumbnail: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("writing thumbnail: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("placing thumbnail: %w", err)
	}
	return path, nil
}
