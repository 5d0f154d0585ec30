package server

import (
	"context"
	"errors"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// anonymous is the chooser recorded for an answer given to a server that
// runs without authentication (the insecure dev mode).
const anonymous = "anonymous"

// userTaskService implements weftv1.UserTaskServiceServer.
type userTaskService struct {
	weftv1.UnimplementedUserTaskServiceServer
	s *Server
}

func (u *userTaskService) ListUserTasks(
	ctx context.Context, req *weftv1.ListUserTasksRequest,
) (*weftv1.ListUserTasksResponse, error) {
	err := first(name("assignee", req.GetAssignee()), name("instance_id", req.GetInstanceId()),
		name("page_token", req.GetPageToken()))
	if err != nil {
		return nil, err
	}
	if req.GetPageSize() < 0 || req.GetPageSize() > maxPageSize {
		return nil, invalidField("page_size", "must be between 0 and %d", maxPageSize)
	}

	page, err := u.s.eng.ListUserTasks(ctx, engine.UserTaskFilter{
		Assignee: req.GetAssignee(), InstanceID: req.GetInstanceId(),
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, onField("page_token", err)
	}

	resp := &weftv1.ListUserTasksResponse{NextPageToken: page.NextPageToken}
	for _, t := range page.Tasks {
		resp.Tasks = append(resp.Tasks, &weftv1.UserTask{
			InstanceId: t.InstanceID, StepId: t.StepID, PointerId: t.PointerID,
			Prompt: t.Prompt, Assignee: t.Assignee, Options: t.Options,
			CreatedAt: ts(t.CreatedAt),
		})
	}

	return resp, nil
}

func (u *userTaskService) CompleteUserTask(
	ctx context.Context, req *weftv1.CompleteUserTaskRequest,
) (*weftv1.CompleteUserTaskResponse, error) {
	err := first(required("instance_id", req.GetInstanceId()), required("step", req.GetStep()),
		required("option", req.GetOption()))
	if err != nil {
		return nil, err
	}

	by := anonymous
	if id, ok := identityOf(ctx); ok {
		by = id.Name
	}
	err = u.s.eng.CompleteUserTask(ctx, req.GetInstanceId(), req.GetStep(), req.GetOption(), by)
	if errors.Is(err, engine.ErrWrongStatus) {
		return nil, onField("step", err)
	}
	if err != nil {
		return nil, onField("instance_id", err)
	}

	return &weftv1.CompleteUserTaskResponse{}, nil
}
