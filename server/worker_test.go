package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// taskFunc runs one task in the test's pull worker: it returns the
// output JSON, or the failure to report.
type taskFunc func(ctx context.Context, task *weftv1.Task) (string, *weftv1.StepError)

// pullWorker takes a service's tasks over StepExecutionService and
// reports their outcomes through it, as a remote service would.
type pullWorker struct {
	t       *testing.T
	client  weftv1.StepExecutionServiceClient
	service string
	actions map[string]taskFunc

	mu    sync.Mutex
	calls []string
}

// runWorker starts a pull worker for service until the test ends.
func runWorker(t *testing.T, p *serveProc, service string, actions map[string]taskFunc) *pullWorker {
	w := &pullWorker{t: t, client: p.steps, service: service, actions: actions}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.loop(ctx)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	return w
}

func (w *pullWorker) loop(ctx context.Context) {
	var running sync.WaitGroup
	defer running.Wait()

	for ctx.Err() == nil {
		resp, err := w.client.PollTasks(ctx, &weftv1.PollTasksRequest{
			Service: w.service, Worker: "test-worker", MaxTasks: 8, Wait: durationpb.New(time.Second),
		})
		if err != nil {
			if ctx.Err() == nil {
				w.t.Errorf("polling tasks: %v", err)
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		for _, task := range resp.GetTasks() {
			running.Add(1)
			go func() {
				defer running.Done()
				w.run(ctx, task)
			}()
		}
	}
}

func (w *pullWorker) run(ctx context.Context, task *weftv1.Task) {
	w.mu.Lock()
	w.calls = append(w.calls, task.GetStepId())
	w.mu.Unlock()

	ref := &weftv1.TaskRef{
		InstanceId: task.GetInstanceId(), PointerId: task.GetPointerId(),
		Attempt: task.GetAttempt(), TaskToken: task.GetTaskToken(),
	}
	f, ok := w.actions[task.GetAction()]
	if !ok {
		w.t.Errorf("task for unknown action %q", task.GetAction())
		return
	}

	out, failure := f(ctx, task)
	var err error
	if failure != nil {
		_, err = w.client.FailTask(ctx, &weftv1.FailTaskRequest{Task: ref, Error: failure})
	} else {
		_, err = w.client.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: ref, Output: out})
	}
	if err != nil && ctx.Err() == nil {
		w.t.Errorf("reporting %s attempt %d: %v", task.GetStepId(), task.GetAttempt(), err)
	}
}

// called lists the step ids of the tasks taken, in order.
func (w *pullWorker) called() []string {
	w.mu.Lock()
	defer w.mu.Unlock()

	return append([]string(nil), w.calls...)
}
