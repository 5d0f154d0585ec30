// Command imageservice runs services of the image pipeline as weft
// workers: it takes the tasks of each service named by -service from weft
// at -address and runs them with the pipeline's step functions. One
// process per service is how the pipeline runs across services:
//
//	imageservice -address 127.0.0.1:7233 -insecure -service exif
//
// With -push-listen the one service named serves push mode instead: weft
// calls it at that address (registered with `weft service register
// faces --mode push --address 127.0.0.1:7301`), and it reports to
// -address:
//
//	imageservice -address 127.0.0.1:7233 -insecure -service faces -push-listen 127.0.0.1:7301
//
// SIGINT or SIGTERM stops polling and lets the running steps finish.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftworks/weft/examples/imagepipeline"
	"github.com/weftworks/weft/worker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imageservice:", err)
		os.Exit(1)
	}
}

func run() error {
	var opts worker.Options
	flag.StringVar(&opts.Address, "address", "127.0.0.1:7233", "weft's gRPC address")
	services := flag.String("service", "", "services to serve, comma-separated: "+
		strings.Join(imagepipeline.Services, ", "))
	flag.BoolVar(&opts.Insecure, "insecure", false, "dial weft without TLS")
	flag.StringVar(&opts.Token, "token", os.Getenv("WEFT_TOKEN"), "bearer token (default $WEFT_TOKEN)")
	flag.IntVar(&opts.Concurrency, "concurrency", 2, "steps run at once per service")
	flag.DurationVar(&opts.Grace, "grace", 30*time.Second, "how long a shutdown waits for running steps")
	pushListen := flag.String("push-listen", "",
		"serve the one -service in push mode on this host:port instead of polling")
	flag.Parse()

	names, err := serviceNames(*services)
	if err != nil {
		return err
	}
	if !opts.Insecure {
		return errors.New("-insecure: required; this example dials weft only without TLS")
	}

	if *pushListen != "" && len(names) != 1 {
		return errors.New("-push-listen: serves exactly one -service")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *pushListen != "" {
		return servePush(ctx, opts, names[0], *pushListen)
	}

	return serve(ctx, opts, names)
}

// servePush serves one service in push mode on addr until ctx ends.
func servePush(ctx context.Context, opts worker.Options, name, addr string) error {
	opts.Service = name
	opts.Logger = slog.Default().With(keyProcess, "imageservice")
	w, err := worker.New(opts)
	if err != nil {
		return err
	}
	defer w.Close()
	if err := imagepipeline.HandleService(w, name); err != nil {
		return err
	}

	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-push-listen: %w", err)
	}
	slog.Info("serving push", keyServices, name, keyAddress, lis.Addr().String())

	return w.ServePush(ctx, lis)
}

func serviceNames(list string) ([]string, error) {
	if list == "" {
		return nil, errors.New("-service: required")
	}

	names := strings.Split(list, ",")
	for _, n := range names {
		if !imagepipeline.KnownService(n) {
			return nil, fmt.Errorf("-service: %q is not one of %v", n, imagepipeline.Services)
		}
	}

	return names, nil
}

// serve runs one worker per service until ctx ends.
func serve(ctx context.Context, opts worker.Options, names []string) error {
	var workers []*worker.Worker
	for _, name := range names {
		o := opts
		o.Service = name
		o.Logger = slog.Default().With(keyProcess, "imageservice")
		w, err := worker.New(o)
		if err != nil {
			return err
		}
		defer w.Close()
		if err := imagepipeline.HandleService(w, name); err != nil {
			return err
		}
		workers = append(workers, w)
	}

	slog.Info("serving", keyServices, strings.Join(names, ","), keyAddress, opts.Address)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { _ = w.Run(ctx) })
	}
	wg.Wait()

	return nil
}

// Log keys, defined once.
const (
	keyProcess  = "process"
	keyServices = "services"
	keyAddress  = "address"
)
