package server

import (
	"context"
	"errors"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
)

// executionService implements WorkflowExecutionService.
type executionService struct {
	weftv1.UnimplementedWorkflowExecutionServiceServer
	s *Server
}

func (x *executionService) StartInstance(
	ctx context.Context, req *weftv1.StartInstanceRequest,
) (*weftv1.StartInstanceResponse, error) {
	err := first(required("definition", req.GetDefinition()),
		notNegative("version", req.GetVersion()), name("start_key", req.GetStartKey()))
	if err != nil {
		return nil, err
	}

	input, err := x.s.payload("input", req.GetInput())
	if err != nil {
		return nil, err
	}

	inst, created, err := x.s.eng.StartInstance(ctx, engine.StartParams{
		Definition: req.GetDefinition(), Version: int(req.GetVersion()),
		Input: input, StartKey: req.GetStartKey(),
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil, onField("start_key", err)
	}
	if err != nil {
		return nil, onField("definition", err)
	}

	return &weftv1.StartInstanceResponse{Instance: instanceMsg(inst), Created: created}, nil
}

// command checks a command's fields, applies it and returns the instance
// as it is afterwards.
func (x *executionService) command(
	ctx context.Context, id, reason string, apply func(context.Context) error,
) (*weftv1.Instance, error) {
	if err := first(required("instance_id", id), name("reason", reason)); err != nil {
		return nil, err
	}

	if err := apply(ctx); err != nil {
		return nil, onField("instance_id", err)
	}

	inst, err := x.s.eng.Instance(ctx, id)
	if err != nil {
		return nil, err
	}

	return instanceMsg(inst), nil
}

func (x *executionService) PauseInstance(
	ctx context.Context, req *weftv1.PauseInstanceRequest,
) (*weftv1.PauseInstanceResponse, error) {
	id := req.GetInstanceId()
	inst, err := x.command(ctx, id, req.GetReason(), func(ctx context.Context) error {
		return x.s.eng.Pause(ctx, id, req.GetReason())
	})
	if err != nil {
		return nil, err
	}

	return &weftv1.PauseInstanceResponse{Instance: inst}, nil
}

func (x *executionService) ResumeInstance(
	ctx context.Context, req *weftv1.ResumeInstanceRequest,
) (*weftv1.ResumeInstanceResponse, error) {
	id := req.GetInstanceId()
	inst, err := x.command(ctx, id, "", func(ctx context.Context) error {
		return x.s.eng.Resume(ctx, id)
	})
	if err != nil {
		return nil, err
	}

	return &weftv1.ResumeInstanceResponse{Instance: inst}, nil
}

func (x *executionService) CancelInstance(
	ctx context.Context, req *weftv1.CancelInstanceRequest,
) (*weftv1.CancelInstanceResponse, error) {
	id := req.GetInstanceId()
	inst, err := x.command(ctx, id, req.GetReason(), func(ctx context.Context) error {
		return x.s.eng.Cancel(ctx, id, req.GetReason())
	})
	if err != nil {
		return nil, err
	}

	return &weftv1.CancelInstanceResponse{Instance: inst}, nil
}

func (x *executionService) TerminateInstance(
	ctx context.Context, req *weftv1.TerminateInstanceRequest,
) (*weftv1.TerminateInstanceResponse, error) {
	id := req.GetInstanceId()
	inst, err := x.command(ctx, id, req.GetReason(), func(ctx context.Context) error {
		return x.s.eng.Terminate(ctx, id, req.GetReason())
	})
	if err != nil {
		return nil, err
	}

	return &weftv1.TerminateInstanceResponse{Instance: inst}, nil
}

func (x *executionService) RetryInstance(
	ctx context.Context, req *weftv1.RetryInstanceRequest,
) (*weftv1.RetryInstanceResponse, error) {
	id := req.GetInstanceId()
	inst, err := x.command(ctx, id, "", func(ctx context.Context) error {
		return x.s.eng.RetryInstance(ctx, id)
	})
	if err != nil {
		return nil, err
	}

	return &weftv1.RetryInstanceResponse{Instance: inst}, nil
}

func (x *executionService) SkipStep(
	ctx context.Context, req *weftv1.SkipStepRequest,
) (*weftv1.SkipStepResponse, error) {
	id := req.GetInstanceId()
	if err := first(required("instance_id", id), required("step_id", req.GetStepId())); err != nil {
		return nil, err
	}
	output, err := x.s.payload("output", req.GetOutput())
	if err != nil {
		return nil, err
	}

	inst, err := x.command(ctx, id, "", func(ctx context.Context) error {
		return x.s.eng.SkipStep(ctx, id, req.GetStepId(), output)
	})
	if err != nil {
		return nil, err
	}

	return &weftv1.SkipStepResponse{Instance: inst}, nil
}

func (x *executionService) PublishEvent(
	ctx context.Context, req *weftv1.PublishEventRequest,
) (*weftv1.PublishEventResponse, error) {
	err := first(required("name", req.GetName()), name("key", req.GetKey()),
		name("instance_id", req.GetInstanceId()))
	if err != nil {
		return nil, err
	}

	data, err := x.s.payload("data", req.GetData())
	if err != nil {
		return nil, err
	}

	p := engine.PublishParams{
		Name: req.GetName(), Key: req.GetKey(), Data: data, InstanceID: req.GetInstanceId(),
	}
	if req.GetTime() != nil {
		if err := req.GetTime().CheckValid(); err != nil {
			return nil, invalidField("time", "%v", err)
		}
		p.Time = req.GetTime().AsTime()
	}
	if p.InstanceID != "" {
		if _, err := x.s.eng.Instance(ctx, p.InstanceID); err != nil {
			return nil, onField("instance_id", err)
		}
	}

	ev, err := x.s.eng.PublishEvent(ctx, p)
	if err != nil {
		return nil, err
	}

	return &weftv1.PublishEventResponse{EventId: ev.ID, PublishedAt: ts(ev.PublishedAt)}, nil
}
