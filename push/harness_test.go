package push_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/push"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// harness is an engine on a fresh SQLite file with a push dispatcher,
// both running until the test ends.
type harness struct {
	t   *testing.T
	ctx context.Context
	st  store.Store
	eng *engine.Engine
	d   *push.Dispatcher
}

func newHarness(t *testing.T, opts push.Options) *harness {
	t.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "weft.db"))
	if err != nil {
		cancel()
		t.Fatalf("opening store: %v", err)
	}
	eng := engine.New(st, engine.Options{
		NodeID: "node-a", PollInterval: 20 * time.Millisecond, CancelGrace: 10 * time.Second,
	})
	if err := eng.Start(ctx); err != nil {
		cancel()
		t.Fatalf("starting engine: %v", err)
	}

	opts.NodeID = "node-a"
	setDefault(&opts.PollInterval, 50*time.Millisecond)
	setDefault(&opts.RefreshInterval, 100*time.Millisecond)
	setDefault(&opts.BackoffBase, 50*time.Millisecond)
	setDefault(&opts.BackoffMax, 200*time.Millisecond)
	setDefault(&opts.BreakerOpen, 300*time.Millisecond)
	d := push.New(eng, opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()

	t.Cleanup(func() {
		cancel()
		<-done
		eng.Stop()
		_ = st.Close()
	})

	return &harness{t: t, ctx: ctx, st: st, eng: eng, d: d}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// service registers a push service and makes the dispatcher read it.
func (h *harness) service(svc store.Service) {
	h.t.Helper()

	svc.Mode = store.ServicePush
	if _, err := h.st.ServicePut(h.ctx, svc, time.Now()); err != nil {
		h.t.Fatalf("registering service %s: %v", svc.Name, err)
	}
	if err := h.d.Refresh(h.ctx); err != nil {
		h.t.Fatalf("refreshing registry: %v", err)
	}
}

func (h *harness) register(src string) {
	h.t.Helper()

	if _, err := h.eng.RegisterDefinition(h.ctx, []byte(src)); err != nil {
		h.t.Fatalf("registering definition: %v", err)
	}
}

func (h *harness) start(name, input string) string {
	h.t.Helper()

	inst, _, err := h.eng.StartInstance(h.ctx, engine.StartParams{
		Definition: name, Input: json.RawMessage(input),
	})
	if err != nil {
		h.t.Fatalf("starting %s: %v", name, err)
	}

	return inst.ID
}

func (h *harness) wait(id string) store.Instance {
	h.t.Helper()

	ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
	defer cancel()
	inst, err := h.eng.Wait(ctx, id)
	if err != nil {
		h.t.Fatalf("waiting for %s: %v", id, err)
	}

	return inst
}

// call is one ExecuteTask call as the service saw it.
type call struct {
	at   time.Time
	task *weftv1.Task
}

// service is a real StepWorkerService on 127.0.0.1 that measures what
// weft sends it: the calls, the most held at once, the cancels.
type service struct {
	weftv1.UnimplementedStepWorkerServiceServer

	addr string
	lis  net.Listener
	srv  *grpc.Server

	// answer decides the reply to a call; it may block to hold the
	// attempt.
	answer func(ctx context.Context, t *weftv1.Task) (*weftv1.ExecuteTaskResponse, error)

	mu      sync.Mutex
	calls   []call
	held    int
	maxHeld int
	cancels []*weftv1.CancelTaskRequest
	cancelc chan *weftv1.CancelTaskRequest
}

// newService reserves an address for a service without serving on it
// yet: calls to it are refused until up.
func newService(t *testing.T) *service {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()

	s := &service{addr: addr, cancelc: make(chan *weftv1.CancelTaskRequest, 100)}
	s.answer = func(context.Context, *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		return output(`{"ok": true}`), nil
	}
	t.Cleanup(s.down)

	return s
}

// acceptingService is a service, up, that answers accepted to every
// call and passes each task on.
func acceptingService(t *testing.T) (*service, <-chan *weftv1.Task) {
	t.Helper()

	s := newService(t)
	tasks := make(chan *weftv1.Task, 1)
	s.answer = func(_ context.Context, task *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		tasks <- task
		return accepted(), nil
	}
	s.up(t)

	return s, tasks
}

// up starts serving on the service's address.
func (s *service) up(t *testing.T, opts ...grpc.ServerOption) {
	t.Helper()

	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listening on %s: %v", s.addr, err)
	}

	s.mu.Lock()
	s.lis = lis
	s.srv = grpc.NewServer(opts...)
	weftv1.RegisterStepWorkerServiceServer(s.srv, s)
	srv := s.srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

// down stops serving; calls are refused again.
func (s *service) down() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()

	if srv != nil {
		srv.Stop()
	}
}

func (s *service) ExecuteTask(ctx context.Context, req *weftv1.ExecuteTaskRequest) (*weftv1.ExecuteTaskResponse, error) {
	s.mu.Lock()
	s.calls = append(s.calls, call{at: time.Now(), task: req.GetTask()})
	s.held++
	s.maxHeld = max(s.maxHeld, s.held)
	answer := s.answer
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		s.held--
		s.mu.Unlock()
	}()

	return answer(ctx, req.GetTask())
}

func (s *service) CancelTask(_ context.Context, req *weftv1.CancelTaskRequest) (*weftv1.CancelTaskResponse, error) {
	if req.GetTask().GetInstanceId() == "" {
		return nil, status.Error(codes.InvalidArgument, "task.instance_id is required")
	}

	s.mu.Lock()
	s.cancels = append(s.cancels, req)
	s.mu.Unlock()
	s.cancelc <- req

	return &weftv1.CancelTaskResponse{}, nil
}

func (s *service) snapshot() (calls []call, maxHeld int) {
	s.mu.Lock()
	defer s.mu.Unlock()

	return append([]call(nil), s.calls...), s.maxHeld
}

func output(raw string) *weftv1.ExecuteTaskResponse {
	return &weftv1.ExecuteTaskResponse{Result: &weftv1.ExecuteTaskResponse_Output{Output: raw}}
}

func accepted() *weftv1.ExecuteTaskResponse {
	return &weftv1.ExecuteTaskResponse{Result: &weftv1.ExecuteTaskResponse_Accepted{Accepted: true}}
}

// oneStep is a workflow of one task step on service svc.
func oneStep(name, svc, extra string) string {
	return fmt.Sprintf(`
name: %s
version: 1
steps:
  - id: work
    type: task
    service: %s
    action: run
    output: result
%s`, name, svc, extra)
}
