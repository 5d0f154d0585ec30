package imagepipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/examples/imagepipeline"
	"github.com/weftworks/weft/examples/imagepipeline/exif"
	"github.com/weftworks/weft/examples/imagepipeline/photos"
	"github.com/weftworks/weft/examples/imagepipeline/picture"
	"github.com/weftworks/weft/examples/imagepipeline/summary"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// TestPipelineOnRealPhotos runs the three steps in process on every
// committed photo and on the landscape fetched from the module proxy,
// checks each row against photos.md and prints the table.
func TestPipelineOnRealPhotos(t *testing.T) {
	if raceEnabled {
		t.Skip("pigo is ten times slower under the race detector: make test-photos runs this test")
	}

	out := t.TempDir()
	var in summary.Input
	for _, path := range photoPaths(t) {
		in1 := imagepipeline.Input{Path: path, OutDir: out}
		res, err := imagepipeline.Process(context.Background(), in1)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}

		// Through JSON, as a step's result reaches the next step.
		data, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		var back summary.Photo
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		in.Photos = append(in.Photos, back)
	}

	table, err := summary.Summarize(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, table, len(in.Photos))
}

// TestWorkflowOnEngine runs pipeline.yaml on the engine over an SQLite
// file, each step in its Go handler, on the same photos.
func TestWorkflowOnEngine(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "weft.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	e := engine.New(st, engine.Options{
		Logger:       slog.New(slog.DiscardHandler),
		PollInterval: 50 * time.Millisecond,
	})
	imagepipeline.Register(e)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()

	if _, err := e.RegisterDefinition(ctx, imagepipeline.Definition); err != nil {
		t.Fatal(err)
	}

	paths := photoPaths(t)
	if raceEnabled {
		paths = paths[:3]
	}
	input, _ := json.Marshal(map[string]any{"photos": paths, "out_dir": t.TempDir()})
	inst, _, err := e.StartInstance(ctx, engine.StartParams{Definition: "imagepipeline", Input: input})
	if err != nil {
		t.Fatal(err)
	}
	inst, err = e.Wait(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != store.InstanceCompleted {
		t.Fatalf("instance ended %s: %s %s", inst.Status, inst.Reason, inst.Error)
	}

	var table summary.Table
	if err := json.Unmarshal(inst.Output, &table); err != nil {
		t.Fatal(err)
	}
	checkTable(t, table, len(paths))
}

// photoPaths returns the paths of every photo but the group ones: the
// committed photos and the sunrise, fetched from the module proxy.
func photoPaths(t *testing.T) []string {
	t.Helper()

	var paths []string
	for _, p := range photos.Select(func(p photos.Photo) bool { return !p.Group() }) {
		path, err := photos.Path(context.Background(), p, "testdata")
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// checkTable checks that the table has n rows, each as photos.md says,
// and prints it.
func checkTable(t *testing.T, table summary.Table, n int) {
	t.Helper()

	want := map[string]summary.Row{
		"pigo-sample.jpg":          {Faces: 1},
		"skimage-astronaut.png":    {Faces: 1},
		"goexif-has-lens-info.jpg": {Camera: "Apple iPhone 4S", Taken: "2014-09-01 15:03:47", GPS: "59.33255,18.06494"},
		"goexif-sample1.jpg":       {Camera: "NIKON D2H", Taken: "2003-11-23 18:07:37", GPS: "39.91556,116.39083"},
		"imagemeta-sunrise.jpg":    {Camera: "PENTAX K-3 II", Taken: "2017-10-27 08:38:52", GPS: "36.59744,-4.50846"},
	}

	if table.Photos != n || len(table.Rows) != n {
		t.Errorf("table has %d photos and %d rows, want %d", table.Photos, len(table.Rows), n)
	}
	for _, row := range table.Rows {
		w, ok := want[row.Photo]
		if !ok {
			t.Errorf("table has a row for %s, which is not a photo of the run", row.Photo)
		}
		checkRow(t, row, w)
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

func TestHandlerRefusesBadInputWithoutRetry(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{"not JSON", `{"path": `},
		{"no path", `{"path": ""}`},
	}

	h := imagepipeline.Handler(exif.Read)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h(context.Background(), engine.Task{Input: json.RawMessage(tt.input)})

			var he *engine.Error
			if !errors.As(err, &he) || he.Retryable || he.Code != "bad_input" {
				t.Errorf("err = %v, want a non-retryable bad_input", err)
			}
		})
	}

	_, err := h(context.Background(), engine.Task{Input: json.RawMessage(`{"path": "missing.jpg"}`)})
	var he *engine.Error
	if err == nil || errors.As(err, &he) {
		t.Errorf("a missing file gave %v, want a plain error the retry policy retries", err)
	}
}
