package server_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// TestServeOverload checks that a call past --max-in-flight is refused
// with RESOURCE_EXHAUSTED and a retry hint, that idle long polls count
// apart so they never lock out quick calls, and that the server serves
// again once the load is gone.
func TestServeOverload(t *testing.T) {
	p := startServe(t, "--max-in-flight", "1")
	ctx := p.ctx(t)

	poll := func(wait time.Duration) error {
		_, err := p.steps.PollTasks(ctx, &weftv1.PollTasksRequest{
			Service: "idle", Worker: "w", Wait: durationpb.New(wait),
		})
		return err
	}
	// The long poll tries again while a probe below holds the slot.
	polling := make(chan error, 1)
	go func() {
		for {
			if err := poll(3 * time.Second); status.Code(err) != codes.ResourceExhausted {
				polling <- err
				return
			}
		}
	}()

	var refused error
	waitFor(t, "a second poll refused while the long poll holds the only slot", func() bool {
		refused = poll(0)
		return status.Code(refused) == codes.ResourceExhausted
	})
	st := status.Convert(refused)
	if len(st.Details()) == 0 {
		t.Fatal("RESOURCE_EXHAUSTED without a retry hint")
	}
	if _, ok := st.Details()[0].(*errdetails.RetryInfo); !ok {
		t.Fatalf("details = %v, want RetryInfo", st.Details())
	}
	if _, err := p.defs.ListDefinitions(ctx, &weftv1.ListDefinitionsRequest{}); err != nil {
		t.Fatalf("a quick call while a long poll waits: %v", err)
	}

	if err := <-polling; err != nil {
		t.Fatalf("the long poll: %v", err)
	}
	if err := poll(0); err != nil {
		t.Fatalf("a poll after the load: %v", err)
	}
}

// TestServeGracefulShutdown sends SIGTERM while a long poll and a
// lifecycle stream are open: both end, and serve exits 0 after logging
// that it stopped.
func TestServeGracefulShutdown(t *testing.T) {
	p := startServe(t)
	ctx := p.ctx(t)
	p.register(t, "name: idle\nversion: 1\nsteps:\n  - {id: a, type: task, service: nobody, action: x}\n")
	p.start(t, "idle", `{}`)

	stream, err := p.state.WatchLifecycle(ctx, &weftv1.WatchLifecycleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("the feed's first row: %v", err)
	}
	polling := make(chan error, 1)
	go func() {
		_, err := p.steps.PollTasks(ctx, &weftv1.PollTasksRequest{
			Service: "idle", Worker: "w", Wait: durationpb.New(50 * time.Second),
		})
		polling <- err
	}()
	time.Sleep(200 * time.Millisecond)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
	<-polling
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v:\n%s", err, p.logText())
	}
	<-p.done
	logs := p.logText()
	for _, want := range []string{`"msg":"stopping"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("logs lack %s:\n%s", want, logs)
		}
	}
}
