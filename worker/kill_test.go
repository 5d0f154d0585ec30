package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/push"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/worker"
)

// helperAddr, in the environment, makes the test binary a worker process
// whose handler prints the task's idempotency key and never returns.
const helperAddr = "WEFT_TEST_HELPER_WORKER"

// helperPush, in the environment with helperAddr, makes the helper serve
// push mode on the address it names instead of polling.
const helperPush = "WEFT_TEST_HELPER_PUSH"

func TestMain(m *testing.M) {
	if addr := os.Getenv(helperAddr); addr != "" {
		os.Exit(helperWorker(addr, os.Getenv(helperPush)))
	}
	os.Exit(m.Run())
}

func helperWorker(addr, pushAddr string) int {
	w, err := worker.New(worker.Options{
		Address: addr, Service: "svc", Insecure: true, PollWait: 200 * time.Millisecond,
		InlineWait: 10 * time.Millisecond,
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
	if pushAddr == "" {
		_ = w.Run(context.Background())
		return 0
	}

	lis, err := net.Listen("tcp", pushAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = w.ServePush(context.Background(), lis)

	return 0
}

// startHelper runs the helper worker process, in push mode on pushAddr
// when it is set, and returns it with its stdout.
func startHelper(t *testing.T, x *weft, pushAddr string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperAddr+"="+x.addr, helperPush+"="+pushAddr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	return cmd, bufio.NewReader(out)
}

// kill ends the helper with SIGKILL.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the helper worker exited cleanly, want killed")
	}
}

// TestKilledWorkerStepHandedAgain kills (SIGKILL) a worker process that
// holds a step: once its claim runs out, the same attempt, with the same
// idempotency key, goes to another worker and completes once.
func TestKilledWorkerStepHandedAgain(t *testing.T) {
	x := serveWeft(t, time.Second)
	cmd, out := startHelper(t, x, "")

	src := strings.Replace(oneTask, "retry: {max_attempts: 3, initial_interval: 10ms}",
		"retry: {max_attempts: 1}", 1)
	id := x.start(t, src, `{"n": 1}`)
	var firstKey string
	var firstAttempt int
	if _, err := fmt.Fscanf(out, "started %s %d\n", &firstKey, &firstAttempt); err != nil {
		t.Fatalf("reading the helper's first task: %v", err)
	}
	kill(t, cmd)

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

// TestKilledPushServiceAttemptTimesOut kills (SIGKILL) a push-mode
// service process that accepted a step: at the attempt's start_to_close
// cap the step is retried, the new attempt goes to the service started
// again on the same address and completes once, and a completion of the
// dead attempt that comes after is refused as late.
func TestKilledPushServiceAttemptTimesOut(t *testing.T) {
	x := serveWeft(t, 0)
	addr := freeAddr(t)
	const claimTTL = 10 * time.Second
	x.push(t, store.Service{Name: "svc", Mode: store.ServicePush, Addresses: []string{addr}},
		push.Options{ClaimTTL: claimTTL})
	cmd, out := startHelper(t, x, addr)

	src := strings.Replace(oneTask, "retry: {max_attempts: 3, initial_interval: 10ms}",
		"retry: {max_attempts: 2, initial_interval: 10ms}\n    timeouts: {start_to_close: 3s}", 1)
	id := x.start(t, src, `{"n": 1}`)
	var firstKey string
	var firstAttempt int
	if _, err := fmt.Fscanf(out, "started %s %d\n", &firstKey, &firstAttempt); err != nil {
		t.Fatalf("reading the helper's first task: %v", err)
	}
	// The helper answers accepted after its inline wait; weft then holds
	// the task until a claim's length past the attempt's cap.
	var dead store.Task
	for deadline := time.Now().Add(10 * time.Second); ; {
		tasks, err := x.eng.Store().TaskList(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) == 1 && !tasks[0].Deadline.IsZero() &&
			!tasks[0].ClaimExpires.Before(tasks[0].Deadline.Add(claimTTL)) {
			dead = tasks[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks %+v; want the one the helper accepted", tasks)
		}
		time.Sleep(10 * time.Millisecond)
	}
	kill(t, cmd)

	w := newWorker(t, x, worker.Options{})
	var calls atomic.Int32
	w.Handle("do", func(_ context.Context, task worker.Task) (any, error) {
		calls.Add(1)
		return fmt.Sprintf("attempt %d", task.Attempt), nil
	})
	servePushOn(t, w, addr)

	inst := x.wait(t, id)
	if inst.Status != store.InstanceCompleted || string(inst.Output) != `"attempt 2"` || calls.Load() != 1 {
		t.Fatalf("instance %s with %s (error %s) after %d calls, want completed by attempt 2 once",
			inst.Status, inst.Output, inst.Error, calls.Load())
	}
	_, err := x.eng.Report(context.Background(), engine.ReportParams{
		InstanceID: id, PointerID: dead.PointerID, Attempt: dead.Attempt, Token: dead.Token,
		Output: json.RawMessage(`"from the dead"`),
	})
	if !errors.Is(err, engine.ErrLate) {
		t.Fatalf("completion of the dead attempt: %v, want ErrLate", err)
	}
	if inst := x.wait(t, id); string(inst.Output) != `"attempt 2"` {
		t.Fatalf("output %s after the late completion, want attempt 2's", inst.Output)
	}
}
