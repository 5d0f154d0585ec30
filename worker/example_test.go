package worker_test

import (
	"context"
	"log"
	"net"
	"os/signal"
	"syscall"
	"time"

	"github.com/weftworks/weft/worker"
)

// ExampleWorker_ServePush makes a program a push-mode service: weft calls
// it on :7300 and it reports slow tasks to weft at 127.0.0.1:7233.
func ExampleWorker_ServePush() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	w, err := worker.New(worker.Options{Address: "127.0.0.1:7233", Service: "greeter", Insecure: true})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	w.Handle("greet", func(_ context.Context, t worker.Task) (any, error) {
		return "hello, " + string(t.Input), nil // answered at once
	})
	w.Handle("ponder", func(ctx context.Context, _ worker.Task) (any, error) {
		select { // answered accepted, reported later
		case <-time.After(2 * time.Second):
			return "pondered", nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	})

	lis, err := net.Listen("tcp", "127.0.0.1:7300")
	if err != nil {
		log.Fatal(err)
	}
	if err := w.ServePush(ctx, lis); err != nil {
		log.Fatal(err)
	}
}
