// Package wire converts store rows to the API's messages where more than
// one package sends them: the server hands tasks to pull workers, the
// push dispatcher to push services.
package wire

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
)

// TaskMsg is a dispatch row as a worker gets it.
func TaskMsg(t store.Task) *weftv1.Task {
	m := &weftv1.Task{
		TaskId:         t.ID,
		InstanceId:     t.InstanceID,
		StepId:         t.StepID,
		PointerId:      t.PointerID,
		Attempt:        int32(t.Attempt),
		Service:        t.Service,
		Action:         t.Action,
		Input:          string(t.Input),
		IdempotencyKey: t.IdempotencyKey,
		TaskToken:      t.Token,
	}
	if !t.Deadline.IsZero() {
		m.Deadline = timestamppb.New(t.Deadline)
	}
	if t.Heartbeat > 0 {
		m.HeartbeatTimeout = durationpb.New(t.Heartbeat)
	}

	return m
}
