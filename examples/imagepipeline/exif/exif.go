// Package exif is the exif step of the image pipeline: it reads the camera,
// the date taken, the GPS position and the orientation of a photo with
// github.com/bep/imagemeta.
package exif

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"strings"
	"time"

	"github.com/bep/imagemeta"

	"github.com/weftworks/weft/examples/imagepipeline/picture"
)

// ErrInput reports an input that names no photo.
var ErrInput = errors.New("invalid input")

// Input is what the exif step reads.
type Input struct {
	// Path is the photo's file, JPEG or PNG.
	Path string `json:"path"`
}

// GPS is a position in decimal degrees, north and east positive.
type GPS struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Result is what the exif step returns. A photo without EXIF gives a
// Result with HasEXIF false, orientation 1 and every other field empty.
type Result struct {
	// HasEXIF reports whether the photo carries any EXIF tag.
	HasEXIF bool `json:"has_exif"`
	// Make and Model are the camera's tags as written.
	Make  string `json:"make,omitempty"`
	Model string `json:"model,omitempty"`
	// Camera is a short name for the camera: see CameraName.
	Camera string `json:"camera,omitempty"`
	// Taken is the date and time the photo was taken, in the camera's
	// clock, as "2006-01-02 15:04:05".
	Taken string `json:"taken,omitempty"`
	// GPS is the position the photo was taken at, if recorded.
	GPS *GPS `json:"gps,omitempty"`
	// Orientation is the EXIF orientation, 1 (upright) to 8.
	Orientation int `json:"orientation"`
	// Width and Height are the stored pixel size, before orientation.
	Width  int `json:"width"`
	Height int `json:"height"`
}

// metaFormats maps the formats picture sniffs to imagemeta's.
var metaFormats = map[picture.Format]imagemeta.ImageFormat{
	picture.JPEG: imagemeta.JPEG,
	picture.PNG:  imagemeta.PNG,
}

// Read reads the EXIF tags of the photo in.Path.
func Read(ctx context.Context, in Input) (Result, error) {
	if in.Path == "" {
		return Result{}, fmt.Errorf("path: %w: required", ErrInput)
	}

	f, err := os.Open(in.Path)
	if err != nil {
		return Result{}, fmt.Errorf("opening photo: %w", err)
	}
	defer f.Close()

	head := make([]byte, 512)
	n, _ := f.Read(head)
	format, err := picture.Sniff(head[:n])
	if err != nil {
		return Result{}, fmt.Errorf("reading %s: %w", in.Path, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return Result{}, fmt.Errorf("reading %s: %w", in.Path, err)
	}

	var tags imagemeta.Tags
	opts := imagemeta.Options{
		R:           f,
		ImageFormat: metaFormats[format],
		Sources:     imagemeta.EXIF | imagemeta.CONFIG,
		// Every IFD, not only IFD0: the date and GPS live in sub-IFDs.
		ShouldHandleTag: func(imagemeta.TagInfo) bool { return true },
		HandleTag:       func(ti imagemeta.TagInfo) error { tags.Add(ti); return nil },
		Warnf:           func(string, ...any) {},
	}
	if deadline, ok := ctx.Deadline(); ok {
		opts.Timeout = max(time.Until(deadline), time.Millisecond)
	}

	decoded, err := imagemeta.Decode(opts)
	if err != nil {
		return Result{}, fmt.Errorf("reading EXIF of %s: %w", in.Path, err)
	}
	return fromTags(tags.EXIF(), decoded.ImageConfig), nil
}

// fromTags builds a Result from the EXIF tags by name.
func fromTags(tags map[string]imagemeta.TagInfo, cfg imagemeta.ImageConfig) Result {
	text := func(name string) string {
		s, _ := tags[name].Value.(string)
		return strings.TrimSpace(strings.TrimRight(s, "\x00"))
	}

	r := Result{
		HasEXIF:     len(tags) > 0,
		Make:        text("Make"),
		Model:       text("Model"),
		Orientation: 1,
		Width:       cfg.Width,
		Height:      cfg.Height,
	}
	r.Camera = CameraName(r.Make, r.Model)

	if o, ok := tags["Orientation"].Value.(uint16); ok && o >= 1 && o <= 8 {
		r.Orientation = int(o)
	}

	for _, name := range []string{"DateTimeOriginal", "DateTime"} {
		if t, err := time.Parse("2006:01:02 15:04:05", text(name)); err == nil {
			r.Taken = t.Format(time.DateTime)
			break
		}
	}

	r.GPS = position(tags)
	return r
}

// position returns the GPS position of the tags, or nil if they hold none.
func position(tags map[string]imagemeta.TagInfo) *GPS {
	lat, okLat := tags["GPSLatitude"].Value.(float64)
	lon, okLon := tags["GPSLongitude"].Value.(float64)
	if !okLat || !okLon || math.IsNaN(lat) || math.IsNaN(lon) {
		return nil
	}

	if ref, _ := tags["GPSLatitudeRef"].Value.(string); ref == "S" {
		lat = -lat
	}
	if ref, _ := tags["GPSLongitudeRef"].Value.(string); ref == "W" {
		lon = -lon
	}
	return &GPS{Lat: lat, Lon: lon}
}

// CameraName returns a short name for a camera: the model alone when it
// already names the maker ("NIKON D2H") or when the maker is a company
// name of several words ("PENTAX K-3 II" rather than "RICOH IMAGING
// COMPANY, LTD. PENTAX K-3 II"), else the maker and the model ("Apple
// iPhone 4S").
func CameraName(maker, model string) string {
	words := strings.Fields(maker)
	switch {
	case model == "":
		return maker
	case len(words) == 0 || len(words) > 1:
		return model
	case strings.Contains(strings.ToLower(model), strings.ToLower(words[0])):
		return model
	default:
		return maker + " " + model
	}
}

// LoadUpright decodes the photo at path and turns it upright by its EXIF
// orientation, as a viewer would show it.
func LoadUpright(ctx context.Context, path string) (image.Image, error) {
	meta, err := Read(ctx, Input{Path: path})
	if err != nil {
		return nil, fmt.Errorf("reading orientation: %w", err)
	}

	img, err := picture.Load(path)
	if err != nil {
		return nil, err
	}

	return picture.Upright(img, meta.Orientation), nil
}
