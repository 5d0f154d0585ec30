// Package server exposes the engine as the gRPC services of package
// weft.v1: WorkflowDefinitionService, WorkflowExecutionService,
// WorkflowStateService and StepExecutionService. Handlers check their
// requests, call the engine's Go API and return plain Go errors; one
// interceptor turns those into gRPC status codes (see errors.go).
package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
)

// Log attribute keys, defined once.
const (
	keyMethod   = "method"
	keyErr      = "err"
	keyCode     = "code"
	keyInstance = "instance_id"
)

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MaxPayloadBytes limits every JSON payload of a request (input,
	// output, event data); default 1 MiB. Keep it equal to the engine's.
	MaxPayloadBytes int
	// MaxInFlight caps the calls served at once; past it a call is
	// refused with RESOURCE_EXHAUSTED and a retry hint. Default 1024.
	// Long polls for tasks and watch streams count apart, each against
	// a cap of their own of the same size, so that idle waiters never
	// lock out quick calls.
	MaxInFlight int
	// TaskClaimTTL is how long a pull worker holds a polled task before
	// another worker may take it, unless a heartbeat renews the claim;
	// default 30s.
	TaskClaimTTL time.Duration
	// PollInterval bounds the sleep between looks at the database of a
	// long poll or a watch stream; default 200ms.
	PollInterval time.Duration
	// Auth authenticates and authorizes every weft.v1 call; nil serves
	// everyone everything (the insecure mode).
	Auth *Auth
}

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxPayloadBytes <= 0 {
		o.MaxPayloadBytes = 1 << 20
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.TaskClaimTTL <= 0 {
		o.TaskClaimTTL = 30 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 200 * time.Millisecond
	}
}

// Server implements the weft.v1 services on an engine.
type Server struct {
	eng   *engine.Engine
	store store.Store
	opts  Options
	log   *slog.Logger
	slots chan struct{}
	// waits are the slots of long polls and watch streams.
	waits chan struct{}
	// refusals limits the audit rows refused calls write.
	refusals refusalLimiter
	// done ends the streams and long polls when the server stops.
	done chan struct{}
}

// New returns a server over e.
func New(e *engine.Engine, opts Options) *Server {
	opts.fill()

	return &Server{
		eng:   e,
		store: e.Store(),
		opts:  opts,
		log:   opts.Logger,
		slots: make(chan struct{}, opts.MaxInFlight),
		waits: make(chan struct{}, opts.MaxInFlight),
		done:  make(chan struct{}),
	}
}

// Register adds the six weft.v1 services to g. Build g with
// ServerOptions so that errors are mapped and load is bounded.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	weftv1.RegisterWorkflowDefinitionServiceServer(g, &definitionService{s: s})
	weftv1.RegisterWorkflowExecutionServiceServer(g, &executionService{s: s})
	weftv1.RegisterWorkflowStateServiceServer(g, &stateService{s: s})
	weftv1.RegisterStepExecutionServiceServer(g, &stepService{s: s})
	weftv1.RegisterUserTaskServiceServer(g, &userTaskService{s: s})
	weftv1.RegisterServiceRegistryServiceServer(g, &registryService{s: s})
}

// ServerOptions returns the interceptors a grpc.Server needs for s: the
// in-flight limit and the error mapping.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.MaxRecvMsgSize(s.opts.MaxPayloadBytes*2 + 64<<10),
	}
}

// Stop ends the watch streams and long polls in progress, so that a
// graceful stop of the grpc.Server does not wait for them.
func (s *Server) Stop() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

func (s *Server) unaryInterceptor(
	ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler,
) (any, error) {
	pool := s.slots
	if info.FullMethod == weftv1.StepExecutionService_PollTasks_FullMethodName {
		pool = s.waits
	}
	release, err := acquire(pool)
	if err != nil {
		return nil, s.status(info.FullMethod, err)
	}
	defer release()

	if s.opts.Auth != nil {
		var authErr error
		if ctx, authErr = s.opts.Auth.authorize(ctx, info.FullMethod); authErr != nil {
			s.auditRefusal(ctx, req, info.FullMethod, authErr)
			return nil, s.status(info.FullMethod, authErr)
		}
	}

	resp, err := h(ctx, req)
	if err != nil {
		s.auditRefusal(ctx, req, info.FullMethod, err)
		return nil, s.status(info.FullMethod, err)
	}

	return resp, nil
}

func (s *Server) streamInterceptor(
	srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler,
) error {
	release, err := acquire(s.waits)
	if err != nil {
		return s.status(info.FullMethod, err)
	}
	defer release()

	if s.opts.Auth != nil {
		ctx, err := s.opts.Auth.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return s.status(info.FullMethod, err)
		}
		ss = &authedStream{ServerStream: ss, ctx: ctx}
	}

	if err := h(srv, ss); err != nil {
		return s.status(info.FullMethod, err)
	}

	return nil
}

// authedStream is a server stream whose context carries the caller.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// acquire takes a slot of pool for one call, or refuses it with
// errOverloaded.
func acquire(pool chan struct{}) (func(), error) {
	select {
	case pool <- struct{}{}:
		return func() { <-pool }, nil
	default:
		return nil, errOverloaded
	}
}

// sleep waits d, or less when ctx ends or the server stops; it returns
// false then.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	case <-t.C:
		return true
	}
}
