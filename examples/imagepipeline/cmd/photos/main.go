// Command photos fetches the real photos the image pipeline runs on into
// the cache folder (see photos.CacheDir) and checks each one's SHA-256.
// By default it fetches only the photos that are not committed to the
// repository; -all fetches every photo of the catalog.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/weftworks/weft/examples/imagepipeline/photos"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "photos:", err)
		os.Exit(1)
	}
}

func run() error {
	dir, err := photos.CacheDir()
	if err != nil {
		return err
	}

	flag.StringVar(&dir, "dir", dir, "folder to fetch the photos into")
	all := flag.Bool("all", false, "also fetch the photos committed to testdata")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	list := photos.Select(func(p photos.Photo) bool { return *all || !p.Committed })
	paths, err := photos.Fetch(ctx, dir, list)
	if err != nil {
		return err
	}

	for i, p := range list {
		fmt.Printf("%-26s %s@%s  sha256 ok  %s\n", p.Name, p.Package, p.Version, paths[i])
	}
	return nil
}
