package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
)

// stepService implements StepExecutionService.
type stepService struct {
	weftv1.UnimplementedStepExecutionServiceServer
	s *Server
}

// Bounds of PollTasks.
const (
	maxPollTasks = 100
	maxPollWait  = time.Minute
)

func (x *stepService) PollTasks(
	ctx context.Context, req *weftv1.PollTasksRequest,
) (*weftv1.PollTasksResponse, error) {
	limit, wait, err := checkPoll(req)
	if err != nil {
		return nil, err
	}
	if err := mayServe(ctx, req.GetService()); err != nil {
		return nil, err
	}

	if err := x.s.pullable(ctx, req.GetService()); err != nil {
		return nil, err
	}

	worker := workerName(ctx, req.GetWorker())
	deadline := time.Now().Add(wait)
	for delay := time.Duration(0); ; delay = x.s.backoff(delay) {
		now := time.Now()
		tasks, err := x.s.store.TaskClaim(ctx, store.TaskClaimParams{
			Worker: worker, Services: []string{req.GetService()}, Limit: limit,
			LeaseTTL: x.s.opts.TaskClaimTTL, Now: now,
		})
		if err != nil {
			return nil, err
		}

		if len(tasks) > 0 || !now.Before(deadline) {
			resp := &weftv1.PollTasksResponse{}
			for _, t := range tasks {
				resp.Tasks = append(resp.Tasks, taskMsg(t))
			}
			if len(tasks) > 0 {
				resp.ClaimExpires = timestamppb.New(now.Add(x.s.opts.TaskClaimTTL))
			}
			return resp, nil
		}

		if !x.s.sleep(ctx, min(delay, time.Until(deadline))) {
			return &weftv1.PollTasksResponse{}, ctx.Err()
		}
	}
}

// pullable refuses a poll for a service registered in push mode (weft
// hands its tasks to the service itself) or not registered at all, so a
// worker with a misspelt service name is told rather than left idle.
func (s *Server) pullable(ctx context.Context, service string) error {
	svc, err := s.store.ServiceGet(ctx, service)
	if errors.Is(err, store.ErrNotFound) {
		return &fieldError{field: "service", err: fmt.Errorf(
			"service %q is not registered (weft service register %s): %w", service, service,
			errNotRegistered)}
	}

	if err != nil {
		return err
	}

	if svc.Mode != store.ServicePull {
		return &fieldError{field: "service", err: fmt.Errorf(
			"service %q is registered in %s mode: weft calls its StepWorkerService, "+
				"pull workers may not poll it: %w", service, svc.Mode, errPushMode)}
	}

	return nil
}

// workerName is the name claims are held under: the worker's own, after
// its identity's when the server authenticates, so that no identity can
// renew another's claims.
func workerName(ctx context.Context, worker string) string {
	if id, ok := identityOf(ctx); ok {
		return id.Name + "/" + worker
	}

	return worker
}

func checkPoll(req *weftv1.PollTasksRequest) (int, time.Duration, error) {
	err := first(required("service", req.GetService()), required("worker", req.GetWorker()))
	if err != nil {
		return 0, 0, err
	}

	limit := int(req.GetMaxTasks())
	if limit < 0 || limit > maxPollTasks {
		return 0, 0, invalidField("max_tasks", "must be between 0 and %d", maxPollTasks)
	}
	limit = max(limit, 1)

	var wait time.Duration
	if req.GetWait() != nil {
		if err := req.GetWait().CheckValid(); err != nil {
			return 0, 0, invalidField("wait", "%v", err)
		}
		wait = req.GetWait().AsDuration()
	}
	if wait < 0 || wait > maxPollWait {
		return 0, 0, invalidField("wait", "must be between 0 and %s", maxPollWait)
	}

	return limit, wait, nil
}

// checkRef checks the attempt a report names.
func checkRef(ref *weftv1.TaskRef) error {
	if ref == nil {
		return invalidField("task", "required")
	}

	return first(required("task.instance_id", ref.GetInstanceId()),
		positive("task.pointer_id", ref.GetPointerId()),
		positive("task.attempt", int64(ref.GetAttempt())),
		required("task.task_token", ref.GetTaskToken()))
}

func (x *stepService) CompleteTask(
	ctx context.Context, req *weftv1.CompleteTaskRequest,
) (*weftv1.CompleteTaskResponse, error) {
	if err := checkRef(req.GetTask()); err != nil {
		return nil, err
	}
	if err := x.s.mayReport(ctx, req.GetTask()); err != nil {
		return nil, err
	}

	output, err := x.s.payload("output", req.GetOutput())
	if errors.Is(err, engine.ErrInvalid) && len(req.GetOutput()) > x.s.opts.MaxPayloadBytes {
		return nil, x.failTooLarge(ctx, req.GetTask(), err)
	}
	if err != nil {
		return nil, err
	}
	if output == nil {
		output = []byte("null")
	}

	res, err := x.report(ctx, req.GetTask(), output, nil)
	if err != nil {
		return nil, err
	}

	return &weftv1.CompleteTaskResponse{
		Outcome: res.outcome, StoredOutput: res.output, StoredError: res.err,
	}, nil
}

// failTooLarge fails an attempt whose output is over the payload limit,
// as the engine does for a Go handler's, and refuses the call.
func (x *stepService) failTooLarge(ctx context.Context, ref *weftv1.TaskRef, cause error) error {
	_, err := x.report(ctx, ref, nil, &engine.Error{
		Code:      "payload_too_large",
		Message:   fmt.Sprintf("output of %d bytes is over the limit", x.s.opts.MaxPayloadBytes),
		Retryable: true,
	})
	if err != nil {
		return err
	}

	return fmt.Errorf("%w; the attempt failed with payload_too_large", cause)
}

func (x *stepService) FailTask(
	ctx context.Context, req *weftv1.FailTaskRequest,
) (*weftv1.FailTaskResponse, error) {
	if err := checkRef(req.GetTask()); err != nil {
		return nil, err
	}
	if err := x.s.mayReport(ctx, req.GetTask()); err != nil {
		return nil, err
	}

	e := req.GetError()
	if e == nil {
		return nil, invalidField("error", "required")
	}
	err := first(required("error.message", e.GetMessage()), name("error.code", e.GetCode()))
	if err != nil {
		return nil, err
	}
	if len(e.GetMessage()) > x.s.opts.MaxPayloadBytes {
		return nil, invalidField("error.message", "over the %d byte limit", x.s.opts.MaxPayloadBytes)
	}

	res, err := x.report(ctx, req.GetTask(), nil, &engine.Error{
		Code: e.GetCode(), Message: e.GetMessage(), Retryable: e.GetRetryable(),
	})
	if err != nil {
		return nil, err
	}

	return &weftv1.FailTaskResponse{
		Outcome: res.outcome, StoredOutput: res.output, StoredError: res.err,
	}, nil
}

// reportResult is a report's outcome in API terms.
type reportResult struct {
	outcome weftv1.ReportOutcome
	output  string
	err     *weftv1.StepError
}

func (x *stepService) report(
	ctx context.Context, ref *weftv1.TaskRef, output []byte, failure *engine.Error,
) (reportResult, error) {
	res, err := x.s.eng.Report(ctx, engine.ReportParams{
		InstanceID: ref.GetInstanceId(), PointerID: ref.GetPointerId(),
		Attempt: int(ref.GetAttempt()), Token: ref.GetTaskToken(), Output: output, Err: failure,
	})
	if err != nil {
		return reportResult{}, onField("task", err)
	}

	out := reportResult{outcome: weftv1.ReportOutcome_REPORT_OUTCOME_ACCEPTED}
	if res.Outcome == store.ReportDuplicate {
		out.outcome = weftv1.ReportOutcome_REPORT_OUTCOME_ALREADY_APPLIED
		if res.Stored != nil {
			out.output = string(res.Stored.Output)
			out.err = stepErrorMsg(res.Stored.Error)
		}
	}

	return out, nil
}

func (x *stepService) HeartbeatTask(
	ctx context.Context, req *weftv1.HeartbeatTaskRequest,
) (*weftv1.HeartbeatTaskResponse, error) {
	ref := req.GetTask()
	err := first(checkRef(ref), notNegative64("task_id", req.GetTaskId()), name("worker", req.GetWorker()))
	if err != nil {
		return nil, err
	}
	if req.GetTaskId() != 0 && req.GetWorker() == "" {
		return nil, invalidField("worker", "required with task_id")
	}
	if err := x.s.mayReport(ctx, ref); err != nil {
		return nil, err
	}

	now := time.Now()
	res, err := x.s.store.StepHeartbeat(ctx, store.StepHeartbeatParams{
		InstanceID: ref.GetInstanceId(), PointerID: ref.GetPointerId(),
		Attempt: int(ref.GetAttempt()), Token: ref.GetTaskToken(), Now: now,
	})
	if err != nil {
		return nil, onField("task", err)
	}
	if res.Outcome == store.ReportLate {
		return nil, onField("task", fmt.Errorf("heartbeat: %s: %w", res.Reason, engine.ErrLate))
	}

	resp := &weftv1.HeartbeatTaskResponse{}
	if inst, err := x.s.eng.Instance(ctx, ref.GetInstanceId()); err == nil {
		resp.CancelRequested = inst.Status == store.InstanceCancelling
	}
	if req.GetTaskId() != 0 {
		until := now.Add(x.s.opts.TaskClaimTTL)
		err := x.s.store.TaskExtend(ctx, workerName(ctx, req.GetWorker()), []int64{req.GetTaskId()}, until)
		if err != nil {
			return nil, onField("task_id", err)
		}
		resp.ClaimExpires = timestamppb.New(until)
	}

	return resp, nil
}
