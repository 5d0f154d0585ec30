package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/push"
	"github.com/weftworks/weft/server"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/weftest"
	"github.com/weftworks/weft/worker"
)

// weft is an engine on a SQLite file served over gRPC on a loopback port.
type weft struct {
	eng      *engine.Engine
	addr     string
	claimTTL time.Duration

	mu   sync.Mutex
	stop func()
}

// serveWeft starts weft for the test; claimTTL sets the task claim of
// pull workers (0 for the default).
func serveWeft(t *testing.T, claimTTL time.Duration) *weft {
	t.Helper()
	x := startEngine(t, claimTTL)
	x.listen(t, "127.0.0.1:0")

	return x
}

// startEngine starts the engine alone; listen serves it.
func startEngine(t *testing.T, claimTTL time.Duration) *weft {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "weft.db"))
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(st, engine.Options{
		Logger: slog.New(slog.DiscardHandler), PollInterval: 50 * time.Millisecond,
		CancelGrace: 10 * time.Second,
	})
	// The definitions of this package name the pull service svc.
	weftest.RegisterServices(t, ctx, eng, "svc")
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}

	x := &weft{eng: eng, claimTTL: claimTTL}
	t.Cleanup(func() {
		x.stopServing()
		eng.Stop()
		st.Close()
	})

	return x
}

// listen serves the API on addr until stopServing.
func (x *weft) listen(t *testing.T, addr string) {
	t.Helper()
	api := server.New(x.eng, server.Options{Logger: slog.New(slog.DiscardHandler), TaskClaimTTL: x.claimTTL})
	g := grpc.NewServer(api.ServerOptions()...)
	api.Register(g)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()

	x.mu.Lock()
	defer x.mu.Unlock()
	x.addr = lis.Addr().String()
	x.stop = func() { api.Stop(); g.Stop() }
}

// push registers a push service and runs weft's push dispatcher with
// opts until the test ends.
func (x *weft) push(t *testing.T, svc store.Service, opts push.Options) {
	t.Helper()
	if _, err := x.eng.RegisterService(context.Background(), svc); err != nil {
		t.Fatal(err)
	}

	opts.NodeID, opts.Logger = x.eng.NodeID(), slog.New(slog.DiscardHandler)
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	d := push.New(x.eng, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// untilDone is a handler that runs until its context ends, then passes
// on the cause and fails with it.
func untilDone(cause chan<- error) worker.HandlerFunc {
	return func(ctx context.Context, _ worker.Task) (any, error) {
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil, context.Cause(ctx)
	}
}

// stopServing closes the API's port and every connection to it.
func (x *weft) stopServing() {
	x.mu.Lock()
	stop := x.stop
	x.stop = nil
	x.mu.Unlock()

	if stop != nil {
		stop()
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	return addr
}

// start registers src and starts an instance of it with input.
func (x *weft) start(t *testing.T, src, input string) string {
	t.Helper()
	def, err := x.eng.RegisterDefinition(context.Background(), []byte(src))
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
	inst, _, err := x.eng.StartInstance(context.Background(), engine.StartParams{
		Definition: def.Name, Input: json.RawMessage(input),
	})
	if err != nil {
		t.Fatalf("starting: %v", err)
	}

	return inst.ID
}

// wait waits for the instance to end.
func (x *weft) wait(t *testing.T, id string) store.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inst, err := x.eng.Wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for %s: %v", id, err)
	}

	return inst
}

// runWorker runs w until the test ends (or stop is called) and reports
// Run's error.
func runWorker(t *testing.T, w *worker.Worker) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()

	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-errc
			w.Close()
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })

	return stop
}

// newWorker makes an insecure worker for service with opts filled in.
func newWorker(t *testing.T, x *weft, opts worker.Options) *worker.Worker {
	t.Helper()
	opts.Address, opts.Insecure = x.addr, true
	if opts.Service == "" {
		opts.Service = "svc"
	}
	if opts.PollWait == 0 {
		opts.PollWait = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = newLogger(&logs{t: t})
	}
	w, err := worker.New(opts)
	if err != nil {
		t.Fatal(err)
	}

	return w
}

// logs keeps a worker's log lines.
type logs struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.buf.String()
}

func newLogger(l *logs) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
