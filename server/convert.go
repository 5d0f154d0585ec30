package server

import (
	"encoding/json"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/internal/wire"
	"github.com/weftworks/weft/store"
)

var instanceStatuses = map[store.InstanceStatus]weftv1.InstanceStatus{
	store.InstanceRunning:    weftv1.InstanceStatus_INSTANCE_STATUS_RUNNING,
	store.InstancePaused:     weftv1.InstanceStatus_INSTANCE_STATUS_PAUSED,
	store.InstanceCancelling: weftv1.InstanceStatus_INSTANCE_STATUS_CANCELLING,
	store.InstanceCompleted:  weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED,
	store.InstanceFailed:     weftv1.InstanceStatus_INSTANCE_STATUS_FAILED,
	store.InstanceCancelled:  weftv1.InstanceStatus_INSTANCE_STATUS_CANCELLED,
	store.InstanceTerminated: weftv1.InstanceStatus_INSTANCE_STATUS_TERMINATED,
}

var stepStatuses = map[store.StepStatus]weftv1.StepStatus{
	store.StepPending:     weftv1.StepStatus_STEP_STATUS_PENDING,
	store.StepDispatched:  weftv1.StepStatus_STEP_STATUS_DISPATCHED,
	store.StepRunning:     weftv1.StepStatus_STEP_STATUS_RUNNING,
	store.StepSleeping:    weftv1.StepStatus_STEP_STATUS_SLEEPING,
	store.StepWaiting:     weftv1.StepStatus_STEP_STATUS_WAITING,
	store.StepCompleted:   weftv1.StepStatus_STEP_STATUS_COMPLETED,
	store.StepFailed:      weftv1.StepStatus_STEP_STATUS_FAILED,
	store.StepSkipped:     weftv1.StepStatus_STEP_STATUS_SKIPPED,
	store.StepCancelled:   weftv1.StepStatus_STEP_STATUS_CANCELLED,
	store.StepCompensated: weftv1.StepStatus_STEP_STATUS_COMPENSATED,
}

// storeStatus is the store's name of an API instance status; ok is false
// for UNSPECIFIED and unknown numbers.
func storeStatus(s weftv1.InstanceStatus) (store.InstanceStatus, bool) {
	for k, v := range instanceStatuses {
		if v == s {
			return k, true
		}
	}

	return "", false
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}

	return timestamppb.New(t)
}

func instanceMsg(i store.Instance) *weftv1.Instance {
	return &weftv1.Instance{
		Id:         i.ID,
		Definition: i.DefinitionName,
		Version:    int32(i.DefinitionVersion),
		Status:     instanceStatuses[i.Status],
		Reason:     i.Reason,
		Input:      string(i.Input),
		Data:       string(i.Data),
		Output:     string(i.Output),
		Error:      string(i.Error),
		StartKey:   i.StartKey,
		CreatedAt:  ts(i.CreatedAt),
		UpdatedAt:  ts(i.UpdatedAt),
		EndedAt:    ts(i.EndedAt),
		LastSeq:    i.LastSeq,
	}
}

func stepMsg(s store.Step) *weftv1.Step {
	return &weftv1.Step{
		PointerId: s.ID,
		StepId:    s.StepID,
		ParentId:  s.ParentID,
		Slot:      int32(s.Slot),
		Status:    stepStatuses[s.Status],
		Attempt:   int32(s.Attempt),
		Service:   s.Service,
		Action:    s.Action,
		Input:     string(s.Input),
		Output:    string(s.Output),
		Error:     string(s.Error),
		CreatedAt: ts(s.CreatedAt),
		StartedAt: ts(s.StartedAt),
		EndedAt:   ts(s.EndedAt),
	}
}

func auditMsg(e store.AuditEvent) *weftv1.AuditEvent {
	return &weftv1.AuditEvent{
		InstanceId: e.InstanceID,
		Seq:        e.Seq,
		Type:       e.Type,
		StepId:     e.StepID,
		PointerId:  e.PointerID,
		Attempt:    int32(e.Attempt),
		Data:       string(e.Data),
		At:         ts(e.At),
	}
}

func definitionMsg(d store.Definition, withSource bool) *weftv1.Definition {
	msg := &weftv1.Definition{
		Name:      d.Name,
		Version:   int32(d.Version),
		Status:    weftv1.DefinitionStatus_DEFINITION_STATUS_ACTIVE,
		CreatedAt: ts(d.CreatedAt),
	}
	if d.Status == store.DefinitionDeprecated {
		msg.Status = weftv1.DefinitionStatus_DEFINITION_STATUS_DEPRECATED
	}

	var head struct {
		Description string `json:"description"`
	}
	if json.Unmarshal(d.Source, &head) == nil {
		msg.Description = head.Description
	}
	if withSource {
		msg.Source = string(d.Source)
	}

	return msg
}

func taskMsg(t store.Task) *weftv1.Task { return wire.TaskMsg(t) }

func pendingTaskMsg(t store.Task) *weftv1.PendingTask {
	return &weftv1.PendingTask{
		TaskId:       t.ID,
		InstanceId:   t.InstanceID,
		StepId:       t.StepID,
		PointerId:    t.PointerID,
		Attempt:      int32(t.Attempt),
		Service:      t.Service,
		Action:       t.Action,
		ClaimedBy:    t.ClaimedBy,
		ClaimExpires: ts(t.ClaimExpires),
		CreatedAt:    ts(t.CreatedAt),
	}
}

func stepErrorMsg(e *store.StepError) *weftv1.StepError {
	if e == nil {
		return nil
	}

	return &weftv1.StepError{Code: e.Code, Message: e.Message, Retryable: e.Retryable}
}
