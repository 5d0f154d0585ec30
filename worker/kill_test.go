package worker_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/worker"
)

// helperAddr, in the environment, makes the test binary a worker process
// whose handler prints the task's idempotency key and never returns.
const helperAddr = "WEFT_TEST_HELPER_WORKER"

func TestMain(m *testing.M) {
	if addr := os.Getenv(helperAddr); addr != "" {
		os.Exit(helperWorker(addr))
	}
	os.Exit(m.Run())
}

func helperWorker(addr string) int {
	w, err := worker.New(worker.Options{
		Address: addr, Service: "svc", Insecure: true, PollWait: 200 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w.Handle("do", func(ctx context.Context, t worker.Task) (any, error) {
		fmt.Printf("started %s %d\n", t.IdempotencyKey, t.Attempt)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	_ = w.Run(context.Background())

	return 0
}

// TestKilledWorkerStepHandedAgain kills (SIGKILL) a worker process that
// holds a step: once its claim runs out, the same attempt, with the same
// idempotency key, goes to another worker and completes once.
func TestKilledWorkerStepHandedAgain(t *testing.T) {
	x := serveWeft(t, time.Second)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperAddr+"="+x.addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	src := strings.Replace(oneTask, "retry: {max_attempts: 3, initial_interval: 10ms}",
		"retry: {max_attempts: 1}", 1)
	id := x.start(t, src, `{"n": 1}`)
	var firstKey string
	var firstAttempt int
	if _, err := fmt.Fscanf(bufio.NewReader(out), "started %s %d\n", &firstKey, &firstAttempt); err != nil {
		t.Fatalf("reading the helper's first task: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the helper worker exited cleanly, want killed")
	}

	w := newWorker(t, x, worker.Options{})
	var calls atomic.Int32
	var key atomic.Value
	w.Handle("do", func(_ context.Context, task worker.Task) (any, error) {
		calls.Add(1)
		key.Store(fmt.Sprintf("%s %d", task.IdempotencyKey, task.Attempt))
		return "after the kill", nil
	})
	runWorker(t, w)

	inst := x.wait(t, id)
	if inst.Status != store.InstanceCompleted || string(inst.Output) != `"after the kill"` || calls.Load() != 1 {
		t.Fatalf("instance %s with %s (error %s) after %d calls, want completed after 1",
			inst.Status, inst.Output, inst.Error, calls.Load())
	}
	if want := fmt.Sprintf("%s %d", firstKey, firstAttempt); key.Load() != want {
		t.Fatalf("second delivery %v, want the same attempt %s", key.Load(), want)
	}
}
