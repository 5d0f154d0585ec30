// Package faces is the faces step of the image pipeline: it finds faces in
// a photo with github.com/esimov/pigo, a pure-Go detector, and returns a
// box for each.
//
// The photo is first turned upright according to its EXIF orientation and
// shrunk so that its longest side is at most 640 pixels: pigo is faster
// there and, with a score threshold near 20, gives no false boxes on the
// real photos the pipeline is tested on. The cascade runs upright and
// tilted about 11 degrees either way, and a box that mostly overlaps a
// better one is dropped. Boxes are given in the pixels of the upright
// photo at its full size.
package faces

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"image"
	"math"
	"sort"
	"sync"

	pigo "github.com/esimov/pigo/core"
	"golang.org/x/image/draw"

	"github.com/weftworks/weft/examples/imagepipeline/exif"
	"github.com/weftworks/weft/examples/imagepipeline/picture"
)

// The defaults of Input's tuning fields.
const (
	DefaultMaxSide   = 640
	DefaultMinScore  = 20
	DefaultMinSize   = 20
	clusterIoU       = 0.2
	suppressOverlap  = 0.5
	cascadeShift     = 0.1
	cascadeScaleStep = 1.1
)

// ErrInput reports an input field out of range.
var ErrInput = errors.New("invalid input")

// facefinder is pigo's frontal face cascade, copied from
// github.com/esimov/pigo v1.4.6 (cascade/facefinder, MIT licence).
//
//go:embed cascade/facefinder
var facefinder []byte

// Input is what the faces step reads.
type Input struct {
	// Path is the photo's file, JPEG or PNG.
	Path string `json:"path"`
	// MaxSide is the longest side the photo is shrunk to before the
	// search; 0 means DefaultMaxSide.
	MaxSide int `json:"max_side,omitempty"`
	// MinScore is the detection score a box needs; 0 means
	// DefaultMinScore.
	MinScore float64 `json:"min_score,omitempty"`
	// AllRotations also searches the photo turned by 90, 180 and 270
	// degrees, for photos stored sideways without an EXIF orientation.
	AllRotations bool `json:"all_rotations,omitempty"`
}

// Box is one face, in pixels of the upright photo at full size.
type Box struct {
	X     int     `json:"x"`
	Y     int     `json:"y"`
	W     int     `json:"w"`
	H     int     `json:"h"`
	Score float64 `json:"score"`
}

// Rect returns the box as an image rectangle.
func (b Box) Rect() image.Rectangle {
	return image.Rect(b.X, b.Y, b.X+b.W, b.Y+b.H)
}

// Result is what the faces step returns.
type Result struct {
	// Count is len(Boxes).
	Count int `json:"count"`
	// Boxes are the faces found, highest score first.
	Boxes []Box `json:"boxes"`
	// Width and Height are the size of the upright photo the boxes lie
	// on.
	Width  int `json:"width"`
	Height int `json:"height"`
}

var (
	cascadeOnce sync.Once
	cascade     *pigo.Pigo
	cascadeErr  error
)

// classifier returns the unpacked cascade, shared by every call.
func classifier() (*pigo.Pigo, error) {
	cascadeOnce.Do(func() {
		cascade, cascadeErr = pigo.NewPigo().Unpack(facefinder)
		if cascadeErr != nil {
			cascadeErr = fmt.Errorf("unpacking the facefinder cascade: %w", cascadeErr)
		}
	})
	return cascade, cascadeErr
}

// Detect finds the faces in the photo in.Path.
func Detect(ctx context.Context, in Input) (Result, error) {
	if err := in.check(); err != nil {
		return Result{}, err
	}

	img, err := exif.LoadUpright(ctx, in.Path)
	if err != nil {
		return Result{}, err
	}
	return DetectImage(ctx, img, in)
}

func (in Input) check() error {
	switch {
	case in.Path == "":
		return fmt.Errorf("path: %w: required", ErrInput)
	case in.MaxSide < 0 || (in.MaxSide > 0 && in.MaxSide < 64):
		return fmt.Errorf("max_side: %w: %d, want 0 or at least 64", ErrInput, in.MaxSide)
	case in.MinScore < 0:
		return fmt.Errorf("min_score: %w: %g, want 0 or more", ErrInput, in.MinScore)
	}
	return nil
}

// DetectImage finds the faces in an upright image; in.Path is not read.
func DetectImage(ctx context.Context, img image.Image, in Input) (Result, error) {
	pg, err := classifier()
	if err != nil {
		return Result{}, err
	}

	maxSide, minScore := in.MaxSide, in.MinScore
	if maxSide == 0 {
		maxSide = DefaultMaxSide
	}
	if minScore == 0 {
		minScore = DefaultMinScore
	}

	small, factor := picture.Fit(img, maxSide)
	rotations := []int{0}
	if in.AllRotations {
		rotations = []int{0, 90, 180, 270}
	}

	var found []pigo.Detection
	for _, deg := range rotations {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("detecting faces: %w", err)
		}

		turned, err := picture.Rotate(small, deg)
		if err != nil {
			return Result{}, err
		}
		for _, d := range search(pg, turned) {
			d.Col, d.Row = unturn(deg, d.Col, d.Row, small.Bounds())
			found = append(found, d)
		}
	}

	full := img.Bounds()
	res := Result{Boxes: []Box{}, Width: full.Dx(), Height: full.Dy()}
	for _, d := range pg.ClusterDetections(found, clusterIoU) {
		if float64(d.Q) < minScore {
			continue
		}
		res.Boxes = append(res.Boxes, toBox(d, factor, full))
	}

	res.Boxes = suppress(res.Boxes)
	res.Count = len(res.Boxes)
	return res, nil
}

// tilts are the angles, in turns, the cascade is run at: upright and
// about 11 degrees either way, for heads that lean.
var tilts = []float64{0, 1.0 / 32, 31.0 / 32}

// search runs the cascade over every position and scale of img, at each
// tilt. The pixels are padded to a square because pigo's tilted search
// clamps columns to the row count.
func search(pg *pigo.Pigo, img image.Image) []pigo.Detection {
	b := img.Bounds()
	side := max(b.Dx(), b.Dy())
	square := image.NewRGBA(image.Rect(0, 0, side, side))
	draw.Draw(square, image.Rect(0, 0, b.Dx(), b.Dy()), img, b.Min, draw.Src)

	params := pigo.CascadeParams{
		MinSize:     DefaultMinSize,
		MaxSize:     min(b.Dx(), b.Dy()),
		ShiftFactor: cascadeShift,
		ScaleFactor: cascadeScaleStep,
		ImageParams: pigo.ImageParams{
			Pixels: grayscale(square), Rows: side, Cols: side, Dim: side,
		},
	}

	var found []pigo.Detection
	for _, tilt := range tilts {
		for _, d := range pg.RunCascade(params, tilt) {
			if d.Row < b.Dy() && d.Col < b.Dx() {
				found = append(found, d)
			}
		}
	}
	return found
}

// suppress keeps, of boxes that overlap much, only the one with the
// highest score; pigo's clustering can leave two clusters on one face.
func suppress(boxes []Box) []Box {
	sort.Slice(boxes, func(i, j int) bool { return boxes[i].Score > boxes[j].Score })

	kept := []Box{}
	for _, b := range boxes {
		dup := false
		for _, k := range kept {
			if overlap(b.Rect(), k.Rect()) > suppressOverlap {
				dup = true
				break
			}
		}
		if !dup {
			kept = append(kept, b)
		}
	}
	return kept
}

// overlap returns the area two rectangles share over the smaller's area.
func overlap(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	small := min(a.Dx()*a.Dy(), b.Dx()*b.Dy())
	if in.Empty() || small == 0 {
		return 0
	}
	return float64(in.Dx()*in.Dy()) / float64(small)
}

// unturn maps a point of img turned clockwise by deg back onto img, whose
// bounds are b.
func unturn(deg, x, y int, b image.Rectangle) (int, int) {
	w, h := b.Dx(), b.Dy()
	switch deg {
	case 90:
		return y, h - 1 - x
	case 180:
		return w - 1 - x, h - 1 - y
	case 270:
		return w - 1 - y, x
	default:
		return x, y
	}
}

// toBox turns a detection on the shrunk image into a box on the full one,
// clipped to its bounds.
func toBox(d pigo.Detection, factor float64, full image.Rectangle) Box {
	half := float64(d.Scale) / 2
	r := image.Rect(
		int(math.Round((float64(d.Col)-half)/factor)),
		int(math.Round((float64(d.Row)-half)/factor)),
		int(math.Round((float64(d.Col)+half)/factor)),
		int(math.Round((float64(d.Row)+half)/factor)),
	).Intersect(image.Rect(0, 0, full.Dx(), full.Dy()))

	return Box{X: r.Min.X, Y: r.Min.Y, W: r.Dx(), H: r.Dy(), Score: float64(d.Q)}
}

// grayscale returns the luma of img, one byte a pixel, row by row.
func grayscale(img image.Image) []uint8 {
	b := img.Bounds()
	gray := make([]uint8, b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := gray[(y-b.Min.Y)*b.Dx():]
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			row[x-b.Min.X] = uint8((299*r + 587*g + 114*bl) / 1000 >> 8)
		}
	}
	return gray
}
