// Package worker turns a Go program into a weft step executor for one
// service: it runs a handler per action with a bounded concurrency,
// heartbeats while a handler runs, and reports each attempt's completion
// or failure to StepExecutionService.
//
// In pull mode (Run) the worker long-polls weft for its service's tasks:
//
//	w, err := worker.New(worker.Options{Address: "127.0.0.1:7233", Service: "exif", Insecure: true})
//	w.Handle("read", func(ctx context.Context, t worker.Task) (any, error) { ... })
//	err = w.Run(ctx)
//
// In push mode (ServePush) the worker serves StepWorkerService and weft
// calls it with each task; a handler that ends within
// Options.InlineWait answers at once, a longer one is answered accepted
// and reported later to weft at Options.Address:
//
//	lis, err := net.Listen("tcp", ":7300")
//	err = w.ServePush(ctx, lis, grpc.Creds(serverTLS))
//
// The same handlers serve both modes.
package worker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// Errors of the package, for errors.Is.
var (
	// ErrOptions is wrapped by New for options it cannot use.
	ErrOptions = errors.New("bad worker options")
	// ErrCancelRequested is the cause of a handler's context when weft
	// says the instance is cancelling.
	ErrCancelRequested = errors.New("weft asked to cancel the task")
	// ErrLost is the cause of a handler's context when weft no longer
	// accepts reports for the attempt (it timed out or was settled).
	ErrLost = errors.New("the task's attempt is lost")
	// ErrShutdown is the cause of a handler's context when the grace
	// period of a shutdown ends before the handler does.
	ErrShutdown = errors.New("the worker is shutting down")
)

// Options configure a Worker. Address and Service are required, and one
// of Insecure, TLS or DialOptions says how to reach weft.
type Options struct {
	// Address is weft's gRPC address, host:port.
	Address string
	// Service is the service whose tasks the worker takes.
	Service string
	// Name names the worker to weft; default host-pid.
	Name string
	// Insecure dials without transport security (loopback and tests).
	Insecure bool
	// TLS is the client TLS configuration when Insecure is false.
	TLS *tls.Config
	// Token is sent as a bearer token on every call when set.
	Token string
	// Concurrency bounds the handlers running at once; default 4.
	Concurrency int
	// PollWait is how long one poll waits for a task; default 30s.
	PollWait time.Duration
	// Grace is how long Run waits for running handlers after its context
	// ends before it cancels them; default 30s.
	Grace time.Duration
	// HeartbeatEvery is the heartbeat interval; default a third of the
	// shorter of the task's heartbeat timeout and its claim.
	HeartbeatEvery time.Duration
	// RetryBackoff is the first wait before a call retried on
	// UNAVAILABLE; it doubles up to 5s. Default 100ms.
	RetryBackoff time.Duration
	// InlineWait is how long ExecuteTask (push mode) waits for a new
	// task's handler before it answers accepted and reports later;
	// default 200ms, never past the call's own deadline.
	InlineWait time.Duration
	// RememberFinished bounds the finished push tasks kept to answer a
	// repeated ExecuteTask with the same result; default 1000.
	RememberFinished int
	// RememberFor is how long a finished push task is kept; default 10m.
	RememberFor time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// DialOptions are added to the dial; they may replace the transport
	// credentials.
	DialOptions []grpc.DialOption
}

// Task is one attempt of a step handed to a handler.
type Task struct {
	// InstanceID and StepID name the instance and the step.
	InstanceID, StepID string
	// PointerID is the execution pointer of the step.
	PointerID int64
	// Attempt counts from 1; a retry of the step gets the next one.
	Attempt int
	// Action is what the step asks the service to do.
	Action string
	// Input is the attempt's input, JSON.
	Input json.RawMessage
	// IdempotencyKey is the same for every delivery of the attempt, so
	// that a handler can recognise a task handed out again.
	IdempotencyKey string
	// Deadline is when the attempt's start-to-close cap ends; zero when
	// it has none.
	Deadline time.Time
	// HeartbeatTimeout is the step's longest gap between heartbeats;
	// zero when it needs none. The worker heartbeats on its own.
	HeartbeatTimeout time.Duration
}

// HandlerFunc runs one task. Its result, marshalled to JSON, completes
// the attempt; an error fails it, retryable unless it is (or wraps) an
// *engine.Error with Retryable false, such as engine.NonRetryable's.
// Its context ends when weft cancels the instance, when the attempt is
// lost or at the attempt's deadline; context.Cause says which.
type HandlerFunc func(ctx context.Context, t Task) (any, error)

// Worker takes one service's tasks from weft and runs them.
type Worker struct {
	opts     Options
	conn     *grpc.ClientConn
	client   weftv1.StepExecutionServiceClient
	log      *slog.Logger
	mu       sync.Mutex
	handlers map[string]HandlerFunc
	slots    chan struct{}
	pushOnce sync.Once
	push     *PushService
}

// New checks opts and dials weft; the connection opens on first use.
func New(opts Options) (*Worker, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}

	dial := []grpc.DialOption{}
	switch {
	case opts.Insecure:
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	case opts.TLS != nil:
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(opts.TLS)))
	}
	if opts.Token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{token: opts.Token, insecure: opts.Insecure}))
	}
	conn, err := grpc.NewClient(opts.Address, append(dial, opts.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("dialling %s: %w", opts.Address, err)
	}

	return &Worker{
		opts: opts, conn: conn, client: weftv1.NewStepExecutionServiceClient(conn),
		log:      opts.Logger.With(keyService, opts.Service, keyWorker, opts.Name),
		handlers: map[string]HandlerFunc{}, slots: make(chan struct{}, opts.Concurrency),
	}, nil
}

func (o *Options) fill() error {
	switch {
	case o.Address == "":
		return fmt.Errorf("address: required: %w", ErrOptions)
	case o.Service == "":
		return fmt.Errorf("service: required: %w", ErrOptions)
	case o.Concurrency < 0:
		return fmt.Errorf("concurrency: must not be negative: %w", ErrOptions)
	case o.RememberFinished < 0:
		return fmt.Errorf("remember_finished: must not be negative: %w", ErrOptions)
	case !o.Insecure && o.TLS == nil && len(o.DialOptions) == 0:
		return fmt.Errorf("tls: required unless insecure: %w", ErrOptions)
	}

	if o.Name == "" {
		host, _ := os.Hostname()
		o.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.PollWait <= 0 {
		o.PollWait = 30 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 100 * time.Millisecond
	}
	if o.InlineWait <= 0 {
		o.InlineWait = 200 * time.Millisecond
	}
	if o.RememberFinished == 0 {
		o.RememberFinished = 1000
	}
	if o.RememberFor <= 0 {
		o.RememberFor = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}

	return nil
}

// Handle sets the handler of action; a later call for the same action
// replaces it.
func (w *Worker) Handle(action string, h HandlerFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()

	w.handlers[action] = h
}

func (w *Worker) handler(action string) (HandlerFunc, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()

	h, ok := w.handlers[action]
	return h, ok
}

// Close closes the connection to weft. Call it after Run returns.
func (w *Worker) Close() error {
	return w.conn.Close()
}

// bearer sends the token as gRPC per-call credentials.
type bearer struct {
	token    string
	insecure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return !b.insecure }

// Log keys, defined once.
const (
	keyService  = "service"
	keyWorker   = "worker"
	keyStep     = "step_id"
	keyAttempt  = "attempt"
	keyAction   = "action"
	keyErr      = "err"
	keyBackoff  = "backoff"
	keyGrace    = "grace"
	keyInstance = "instance_id"
	keyReason   = "reason"
	keyAddr     = "addr"
)
