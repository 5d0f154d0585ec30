// Command pipeline runs the image pipeline end to end across processes:
// it starts `weft serve --insecure` on an embedded SQLite file and one
// imageservice process per service (exif, faces, thumbs, summary),
// registers the four services and pipeline.yaml, starts it over a folder
// of photos, shows the progress per service while it runs and prints a
// table per photo. The services named by -push (faces by default) run
// in push mode, weft calling them; the others poll weft (pull mode).
//
//	go run ./examples/imagepipeline/cmd/pipeline
//
// Without -weft and -imageservice it builds both with `go build` first,
// so run it from the repository.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/weftworks/weft/examples/imagepipeline"
	"github.com/weftworks/weft/examples/imagepipeline/remote"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg remote.Config
	flag.StringVar(&cfg.Weft, "weft", "", "weft binary (default: go build ./cmd/weft)")
	flag.StringVar(&cfg.ImageService, "imageservice", "",
		"imageservice binary (default: go build ./examples/imagepipeline/cmd/imageservice)")
	photos := flag.String("photos", "examples/imagepipeline/testdata", "folder of .jpg and .png photos")
	flag.StringVar(&cfg.OutDir, "out", "", "folder for the thumbnails (default: a new temporary folder)")
	late := flag.String("late", "", "services to start late, as name=duration,... (say faces=3s)")
	push := flag.String("push", "faces", "services in push mode, comma-separated; the others pull")
	verbose := flag.Bool("v", false, "show the processes' logs")
	flag.Parse()

	var err error
	if cfg.Late, err = parseLate(*late); err != nil {
		return err
	}
	if cfg.Photos, err = photoFiles(*photos); err != nil {
		return err
	}
	if cfg.Push, err = parsePush(*push); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	cfg.Dir, err = os.MkdirTemp("", "weft-pipeline-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cfg.Dir)
	if err := prepare(ctx, &cfg); err != nil {
		return err
	}
	cfg.Progress = os.Stdout
	if *verbose {
		cfg.Logs = os.Stderr
	}

	var pushed []string
	for name := range cfg.Push {
		pushed = append(pushed, name)
	}
	slices.Sort(pushed)
	fmt.Printf("running the image pipeline on %d photos across 4 services (push: %s; the others pull)\n",
		len(cfg.Photos), strings.Join(pushed, ", "))
	res, err := remote.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("\ninstance %s completed\n\n", res.InstanceID)

	return remote.PrintTable(os.Stdout, res.Table)
}

// prepare builds the binaries not given and makes the thumbnail folder.
func prepare(ctx context.Context, cfg *remote.Config) error {
	for _, b := range []struct {
		path *string
		pkg  string
	}{{&cfg.Weft, "./cmd/weft"}, {&cfg.ImageService, "./examples/imagepipeline/cmd/imageservice"}} {
		if *b.path != "" {
			continue
		}
		*b.path = filepath.Join(cfg.Dir, filepath.Base(b.pkg))
		fmt.Printf("building %s\n", b.pkg)
		build := exec.CommandContext(ctx, "go", "build", "-o", *b.path, b.pkg)
		build.Stdout, build.Stderr = io.Discard, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building %s: %w", b.pkg, err)
		}
	}

	if cfg.OutDir == "" {
		dir, err := os.MkdirTemp("", "weft-thumbs-")
		if err != nil {
			return err
		}
		cfg.OutDir = dir
	}

	return os.MkdirAll(cfg.OutDir, 0o755)
}

// photoFiles lists the .jpg and .png files of dir, as absolute paths.
func photoFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("-photos: %w", err)
	}

	var paths []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.Type().IsRegular() && slices.Contains([]string{".jpg", ".jpeg", ".png"}, ext) {
			abs, err := filepath.Abs(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			paths = append(paths, abs)
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("-photos: no .jpg or .png file in %s", dir)
	}

	return paths, nil
}

func parsePush(s string) (map[string]bool, error) {
	push := map[string]bool{}
	if s == "" {
		return push, nil
	}

	for _, name := range strings.Split(s, ",") {
		if !imagepipeline.KnownService(name) {
			return nil, fmt.Errorf("-push: %q is not one of %v", name, imagepipeline.Services)
		}
		push[name] = true
	}

	return push, nil
}

func parseLate(s string) (map[string]time.Duration, error) {
	late := map[string]time.Duration{}
	if s == "" {
		return late, nil
	}

	for _, part := range strings.Split(s, ",") {
		name, d, ok := strings.Cut(part, "=")
		dur, err := time.ParseDuration(d)
		if !ok || err != nil || dur < 0 {
			return nil, errors.New("-late: want name=duration,... such as faces=3s")
		}
		late[name] = dur
	}

	return late, nil
}
