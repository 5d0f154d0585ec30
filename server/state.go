package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
)

// stateService implements WorkflowStateService.
type stateService struct {
	weftv1.UnimplementedWorkflowStateServiceServer
	s *Server
}

// Bounds of the listing calls.
const (
	maxPageSize    = 1000
	maxAuditLimit  = 10000
	watchBatchSize = 500
)

func (r *stateService) GetInstance(
	ctx context.Context, req *weftv1.GetInstanceRequest,
) (*weftv1.GetInstanceResponse, error) {
	if err := required("instance_id", req.GetInstanceId()); err != nil {
		return nil, err
	}

	inst, err := r.s.eng.Instance(ctx, req.GetInstanceId())
	if err != nil {
		return nil, onField("instance_id", err)
	}

	steps, err := r.s.eng.Steps(ctx, inst.ID)
	if err != nil {
		return nil, onField("instance_id", err)
	}

	resp := &weftv1.GetInstanceResponse{Instance: instanceMsg(inst)}
	for _, st := range steps {
		resp.Steps = append(resp.Steps, stepMsg(st))
	}

	return resp, nil
}

func (r *stateService) ListInstances(
	ctx context.Context, req *weftv1.ListInstancesRequest,
) (*weftv1.ListInstancesResponse, error) {
	f, err := r.filter(req)
	if err != nil {
		return nil, err
	}

	page, err := r.s.eng.ListInstances(ctx, f)
	if err != nil {
		return nil, onField("page_token", err)
	}

	resp := &weftv1.ListInstancesResponse{NextPageToken: page.NextPageToken}
	for _, inst := range page.Instances {
		resp.Instances = append(resp.Instances, instanceMsg(inst))
	}

	return resp, nil
}

// filter checks a listing request and turns it into a store filter.
func (r *stateService) filter(req *weftv1.ListInstancesRequest) (store.InstanceFilter, error) {
	f := store.InstanceFilter{
		DefinitionName: req.GetDefinition(), DefinitionVersion: int(req.GetVersion()),
		StartKey: req.GetStartKey(), DataPath: req.GetDataPath(),
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	}
	err := first(name("definition", f.DefinitionName), notNegative("version", req.GetVersion()),
		name("start_key", f.StartKey), name("page_token", f.PageToken))
	if err != nil {
		return f, err
	}

	for i, st := range req.GetStatuses() {
		s, ok := storeStatus(st)
		if !ok {
			return f, invalidField(fmt.Sprintf("statuses[%d]", i), "unknown status %v", st)
		}
		f.Status = append(f.Status, s)
	}

	if f.DefinitionVersion != 0 && f.DefinitionName == "" {
		return f, invalidField("version", "needs definition")
	}
	if req.GetPageSize() < 0 || req.GetPageSize() > maxPageSize {
		return f, invalidField("page_size", "must be between 0 and %d", maxPageSize)
	}
	if f.CreatedAfter, err = optionalTime("created_after", req.GetCreatedAfter()); err != nil {
		return f, err
	}
	if f.CreatedBefore, err = optionalTime("created_before", req.GetCreatedBefore()); err != nil {
		return f, err
	}

	if f.DataPath != "" {
		if err := dataPath("data_path", f.DataPath); err != nil {
			return f, err
		}
		if f.DataValue, err = r.s.payload("data_value", req.GetDataValue()); err != nil {
			return f, err
		}
		if f.DataValue == nil {
			return f, invalidField("data_value", "required with data_path")
		}
	} else if req.GetDataValue() != "" {
		return f, invalidField("data_path", "required with data_value")
	}

	return f, nil
}

func (r *stateService) ListAuditEvents(
	ctx context.Context, req *weftv1.ListAuditEventsRequest,
) (*weftv1.ListAuditEventsResponse, error) {
	err := first(required("instance_id", req.GetInstanceId()),
		notNegative64("after_seq", req.GetAfterSeq()))
	if err != nil {
		return nil, err
	}
	if req.GetLimit() < 0 || req.GetLimit() > maxAuditLimit {
		return nil, invalidField("limit", "must be between 0 and %d", maxAuditLimit)
	}

	if _, err := r.s.eng.Instance(ctx, req.GetInstanceId()); err != nil {
		return nil, onField("instance_id", err)
	}

	evs, err := r.s.eng.Audit(ctx, req.GetInstanceId(), req.GetAfterSeq(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}

	resp := &weftv1.ListAuditEventsResponse{}
	for _, ev := range evs {
		resp.Events = append(resp.Events, auditMsg(ev))
	}

	return resp, nil
}

func (r *stateService) ListTasks(
	ctx context.Context, req *weftv1.ListTasksRequest,
) (*weftv1.ListTasksResponse, error) {
	err := first(name("instance_id", req.GetInstanceId()), name("service", req.GetService()))
	if err != nil {
		return nil, err
	}
	if req.GetInstanceId() != "" {
		if _, err := r.s.eng.Instance(ctx, req.GetInstanceId()); err != nil {
			return nil, onField("instance_id", err)
		}
	}

	tasks, err := r.s.store.TaskList(ctx, req.GetInstanceId())
	if err != nil {
		return nil, err
	}

	resp := &weftv1.ListTasksResponse{}
	for _, t := range tasks {
		if req.GetService() == "" || t.Service == req.GetService() {
			resp.Tasks = append(resp.Tasks, pendingTaskMsg(t))
		}
	}

	return resp, nil
}

func (r *stateService) WatchInstance(
	req *weftv1.WatchInstanceRequest, stream weftv1.WorkflowStateService_WatchInstanceServer,
) error {
	ctx := stream.Context()
	err := first(required("instance_id", req.GetInstanceId()),
		notNegative64("after_seq", req.GetAfterSeq()))
	if err != nil {
		return err
	}

	after := req.GetAfterSeq()
	for delay, first := time.Duration(0), true; ; delay, first = r.s.backoff(delay), false {
		inst, err := r.s.eng.Instance(ctx, req.GetInstanceId())
		if err != nil {
			return onField("instance_id", err)
		}
		if first && after > inst.LastSeq {
			return invalidField("after_seq", "%d is past the instance's last seq %d", after, inst.LastSeq)
		}

		evs, err := r.s.eng.Audit(ctx, inst.ID, after, watchBatchSize)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			resp := &weftv1.WatchInstanceResponse{Event: auditMsg(ev), Status: instanceStatuses[inst.Status]}
			if err := stream.Send(resp); err != nil {
				return err
			}
			after = ev.Seq
		}

		if len(evs) > 0 {
			delay = 0
			continue
		}
		if inst.Status.Final() && after >= inst.LastSeq {
			return nil
		}
		if !r.s.sleep(ctx, delay) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// The server stops: say so, so that the client watches again
			// from where it was rather than taking the end for the
			// instance's.
			return status.Errorf(codes.Unavailable, "server stopping; watch again after seq %d", after)
		}
	}
}

func (r *stateService) WatchLifecycle(
	req *weftv1.WatchLifecycleRequest, stream weftv1.WorkflowStateService_WatchLifecycleServer,
) error {
	ctx := stream.Context()
	if err := notNegative64("after_position", req.GetAfterPosition()); err != nil {
		return err
	}

	feed, ok := r.s.store.(store.FeedReader)
	if !ok {
		return fmt.Errorf("the lifecycle feed needs a store that keeps commit order: %w", errNotInEngine)
	}

	after := req.GetAfterPosition()
	for delay := time.Duration(0); ; delay = r.s.backoff(delay) {
		evs, err := feed.AuditFeed(ctx, after, watchBatchSize)
		if errors.Is(err, errors.ErrUnsupported) {
			return fmt.Errorf("%w: %w", errNotInEngine, err)
		}
		if err != nil {
			return err
		}

		for _, ev := range evs {
			resp := &weftv1.WatchLifecycleResponse{Position: ev.Position, Event: auditMsg(ev.Event)}
			if err := stream.Send(resp); err != nil {
				return err
			}
			after = ev.Position
		}

		if len(evs) > 0 {
			delay = 0
			continue
		}
		if !r.s.sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

// backoff is the next sleep of a poll loop: doubling from 10ms up to the
// poll interval.
func (s *Server) backoff(d time.Duration) time.Duration {
	return min(max(2*d, 10*time.Millisecond), s.opts.PollInterval)
}

func notNegative64(field string, v int64) error {
	if v < 0 {
		return invalidField(field, "must not be negative, got %d", v)
	}

	return nil
}

func optionalTime(field string, t *timestamppb.Timestamp) (time.Time, error) {
	if t == nil {
		return time.Time{}, nil
	}
	if err := t.CheckValid(); err != nil {
		return time.Time{}, invalidField(field, "%v", err)
	}

	return t.AsTime(), nil
}
