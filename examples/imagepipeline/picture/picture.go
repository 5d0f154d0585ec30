// Package picture decodes photos, turns them upright according to their
// EXIF orientation and resizes them: the image handling the exif, faces
// and thumbs steps share.
package picture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"os"

	"golang.org/x/image/draw"
)

// ErrFormat reports a file that is neither JPEG nor PNG.
var ErrFormat = errors.New("unsupported image format")

// Format names an image file format.
type Format string

// The formats the pipeline reads.
const (
	JPEG Format = "jpeg"
	PNG  Format = "png"
)

// Sniff reports the format of the file that starts with head.
func Sniff(head []byte) (Format, error) {
	switch http.DetectContentType(head) {
	case "image/jpeg":
		return JPEG, nil
	case "image/png":
		return PNG, nil
	default:
		return "", ErrFormat
	}
}

// Load decodes the JPEG or PNG file at path.
func Load(path string) (image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}

	format, err := Sniff(data)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}

	var img image.Image
	switch format {
	case JPEG:
		img, err = jpeg.Decode(bytes.NewReader(data))
	case PNG:
		img, err = png.Decode(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	return img, nil
}

// Upright returns img as it is meant to be seen given its EXIF orientation
// (1 to 8; any other value leaves img as it is).
func Upright(img image.Image, orientation int) image.Image {
	if orientation < 2 || orientation > 8 {
		return img
	}

	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	src := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(src, src.Bounds(), img, b.Min, draw.Src)

	dw, dh := w, h
	if orientation >= 5 {
		dw, dh = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for sy := range h {
		for sx := range w {
			dx, dy := place(orientation, sx, sy, w, h)
			s := src.PixOffset(sx, sy)
			copy(dst.Pix[dst.PixOffset(dx, dy):][:4], src.Pix[s:s+4])
		}
	}
	return dst
}

// place maps a source pixel to its place in the upright image.
func place(orientation, x, y, w, h int) (int, int) {
	switch orientation {
	case 2:
		return w - 1 - x, y
	case 3:
		return w - 1 - x, h - 1 - y
	case 4:
		return x, h - 1 - y
	case 5:
		return y, x
	case 6:
		return h - 1 - y, x
	case 7:
		return h - 1 - y, w - 1 - x
	case 8:
		return y, w - 1 - x
	default:
		return x, y
	}
}

// Rotate turns img clockwise by degrees, which must be 0, 90, 180 or 270.
func Rotate(img image.Image, degrees int) (image.Image, error) {
	switch degrees {
	case 0:
		return img, nil
	case 90:
		return Upright(img, 6), nil
	case 180:
		return Upright(img, 3), nil
	case 270:
		return Upright(img, 8), nil
	default:
		return nil, fmt.Errorf("rotating by %d degrees: only right angles", degrees)
	}
}

// Fit returns img shrunk so that its longest side is at most maxSide
// pixels, with CatmullRom resampling, and the factor it was shrunk by.
// An image that already fits is returned as it is, with factor 1.
func Fit(img image.Image, maxSide int) (image.Image, float64) {
	b := img.Bounds()
	longest := max(b.Dx(), b.Dy())
	if longest <= maxSide {
		return img, 1
	}

	f := float64(maxSide) / float64(longest)
	w := max(1, int(float64(b.Dx())*f+0.5))
	h := max(1, int(float64(b.Dy())*f+0.5))
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	return dst, f
}

// EncodeJPEG writes img as a JPEG whose only EXIF tag is the given
// orientation, as a camera held sideways would. Orientation 0 writes no
// EXIF at all.
func EncodeJPEG(w io.Writer, img image.Image, orientation int) error {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 92}); err != nil {
		return fmt.Errorf("encoding jpeg: %w", err)
	}

	data := buf.Bytes()
	if orientation == 0 {
		_, err := w.Write(data)
		return err
	}

	// An APP1 segment: "Exif", a big-endian TIFF header and an IFD0 with
	// one SHORT entry, tag 0x0112 (Orientation).
	tiff := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1}
	tiff = binary.BigEndian.AppendUint16(tiff, uint16(orientation))
	tiff = append(tiff, 0, 0, 0, 0, 0, 0)
	payload := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xFF, 0xE1}
	app1 = binary.BigEndian.AppendUint16(app1, uint16(len(payload)+2))
	app1 = append(app1, payload...)

	out := append(append(append([]byte{}, data[:2]...), app1...), data[2:]...)
	_, err := w.Write(out)
	return err
}
