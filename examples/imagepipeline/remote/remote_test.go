package remote_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/examples/imagepipeline/remote"
)

// The binaries built once for the package's tests.
var weftBin, serviceBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "weft-remote-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "making a temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	weftBin, serviceBin = filepath.Join(dir, "weft"), filepath.Join(dir, "imageservice")
	for bin, pkg := range map[string]string{weftBin: "../../../cmd/weft", serviceBin: "../cmd/imageservice"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg, err)
			return 1
		}
	}

	return m.Run()
}

// config runs the committed photos with the test's binaries.
func config(t *testing.T) (remote.Config, *bytes.Buffer) {
	t.Helper()
	entries, err := os.ReadDir("../testdata")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		abs, err := filepath.Abs(filepath.Join("../testdata", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, abs)
	}

	logs := &bytes.Buffer{}
	return remote.Config{
		Weft: weftBin, ImageService: serviceBin, Dir: t.TempDir(),
		Photos: paths, OutDir: t.TempDir(), Logs: &syncWriter{buf: logs},
	}, logs
}

func run(t *testing.T, cfg remote.Config, logs *bytes.Buffer) remote.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	res, err := remote.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("running the pipeline: %v\n%s", err, logs)
	}

	return res
}

// TestPipelineAcrossProcesses is scenario 5 on real photos: weft serve
// and the four services each in its own process on loopback.
func TestPipelineAcrossProcesses(t *testing.T) {
	cfg, logs := config(t)
	res := run(t, cfg, logs)

	var table bytes.Buffer
	if err := remote.PrintTable(&table, res.Table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())

	want := map[string]struct {
		camera string
		gps    bool
		faces  int
	}{
		"goexif-has-lens-info.jpg": {"Apple iPhone 4S", true, 0},
		"goexif-sample1.jpg":       {"NIKON D2H", true, 0},
		"pigo-sample.jpg":          {"", false, 1},
		"skimage-astronaut.png":    {"", false, 1},
	}
	if len(res.Table.Rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(res.Table.Rows), len(want))
	}
	for _, r := range res.Table.Rows {
		w := want[r.Photo]
		if r.Camera != w.camera || (r.GPS != "") != w.gps || r.Faces != w.faces {
			t.Errorf("%s: camera %q, GPS %q, %d faces; want %+v", r.Photo, r.Camera, r.GPS, r.Faces, w)
		}
		if _, err := os.Stat(r.Thumbnail); err != nil || filepath.Dir(r.Thumbnail) != cfg.OutDir {
			t.Errorf("%s: thumbnail %s: %v", r.Photo, r.Thumbnail, err)
		}
	}

	last := res.Seen[len(res.Seen)-1]
	if !strings.Contains(last, "exif 4/4") || !strings.Contains(last, "summary 1/1") {
		t.Errorf("last progress line %q, want every step done", last)
	}
}

var progress = regexp.MustCompile(`exif (\d+)/\d+  faces (\d+)/\d+`)

// exifAheadOfFaces is true when a progress line has exif steps done and
// no faces step yet: exif went on while faces was down.
func exifAheadOfFaces(seen []string) bool {
	for _, line := range seen {
		m := progress.FindStringSubmatch(line)
		exifDone, _ := strconv.Atoi(m[1])
		facesDone, _ := strconv.Atoi(m[2])
		if exifDone > 0 && facesDone == 0 {
			return true
		}
	}

	return false
}

// TestServiceStartsLate starts faces three seconds after the others: its
// tasks wait for it, exif goes on meanwhile, and the run completes.
func TestServiceStartsLate(t *testing.T) {
	cfg, logs := config(t)
	cfg.Late = map[string]time.Duration{"faces": 3 * time.Second}
	res := run(t, cfg, logs)

	if res.Table.Photos != 4 || res.Table.Faces != 2 {
		t.Fatalf("table of %d photos and %d faces, want 4 and 2", res.Table.Photos, res.Table.Faces)
	}

	if !exifAheadOfFaces(res.Seen) {
		t.Errorf("no progress line with exif done while faces was down:\n%s", strings.Join(res.Seen, "\n"))
	}
}

// syncWriter serialises writes to a buffer shared by goroutines.
type syncWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()

	return w.buf.Write(p)
}

// TestWeftStartsLate starts the four services three seconds before weft:
// their polls fail UNAVAILABLE and are retried with backoff until weft
// serves, and the run completes.
func TestWeftStartsLate(t *testing.T) {
	cfg, logs := config(t)
	cfg.WeftLate = 3 * time.Second
	res := run(t, cfg, logs)

	if res.Table.Photos != 4 || res.Table.Faces != 2 {
		t.Fatalf("table of %d photos and %d faces, want 4 and 2", res.Table.Photos, res.Table.Faces)
	}
	for _, svc := range []string{"service=exif", "service=faces", "service=thumbs", "service=summary"} {
		if !regexp.MustCompile(`polling tasks failed.*` + svc).MatchString(logs.String()) {
			t.Errorf("no failed poll of %s in the logs:\n%s", svc, logs)
		}
	}
}

// TestPushServiceDownAtFirst is scenario 5 in push mode: weft calls the
// faces service at its own address over gRPC and takes its answers,
// while the service is down for the first three seconds. The calls are
// refused, retried with backoff behind the service's breaker, and then
// succeed; no faces step spends an attempt on the outage, and the state
// queries show exif going on meanwhile.
func TestPushServiceDownAtFirst(t *testing.T) {
	cfg, logs := config(t)
	cfg.Push = map[string]bool{"faces": true}
	cfg.Late = map[string]time.Duration{"faces": 3 * time.Second}
	res := run(t, cfg, logs)

	if res.Table.Photos != 4 || res.Table.Faces != 2 {
		t.Fatalf("table of %d photos and %d faces, want 4 and 2", res.Table.Photos, res.Table.Faces)
	}
	faces := 0
	for _, s := range res.Steps {
		if s.GetService() != "faces" {
			continue
		}
		faces++
		if s.GetAttempt() != 1 {
			t.Errorf("faces step %s ran %d attempts; a service that is down costs none",
				s.GetStepId(), s.GetAttempt())
		}
	}
	if faces != 4 {
		t.Errorf("%d faces steps, want 4", faces)
	}
	if !regexp.MustCompile(`"msg":"service breaker changed","service":"faces"`).MatchString(logs.String()) {
		t.Errorf("no breaker change for faces in weft's logs:\n%s", logs)
	}

	if !exifAheadOfFaces(res.Seen) {
		t.Errorf("no progress line with exif done while faces was down:\n%s", strings.Join(res.Seen, "\n"))
	}
}
