package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

var zeroTime time.Time

// StartParams says which definition to start and with what.
type StartParams struct {
	// Definition is the definition's name; Version 0 takes the newest
	// active version.
	Definition string
	Version    int
	// Input is a JSON object; empty means {}.
	Input json.RawMessage
	// StartKey makes the start idempotent: the same key and input give
	// back the instance started first.
	StartKey string
}

// StartInstance starts an instance and returns it; created is false when
// a start key found an earlier instance.
func (e *Engine) StartInstance(ctx context.Context, p StartParams) (store.Instance, bool, error) {
	g, err := e.startGraph(ctx, p)
	if err != nil {
		return store.Instance{}, false, err
	}

	input, err := e.checkInput(g, p.Input)
	if err != nil {
		return store.Instance{}, false, err
	}

	params, err := e.createParams(g, input, p.StartKey, nil)
	if err != nil {
		return store.Instance{}, false, err
	}

	if err := e.starting(ctx, params.Instance); err != nil {
		return store.Instance{}, false, err
	}

	out, created, err := e.store.InstanceCreate(ctx, params)
	if err != nil {
		return store.Instance{}, false, err
	}
	e.wake(e.wakeSched)

	return out, created, nil
}

// createParams builds a new instance of g with its root pointer, first
// audit row and deadline timer; parent links a sub-workflow child to the
// step that started it.
func (e *Engine) createParams(g *definition.Graph, input json.RawMessage, startKey string,
	parent *parentLink) (store.InstanceCreateParams, error) {
	now := e.clock.Now()
	id, err := uuid.NewV7()
	if err != nil {
		return store.InstanceCreateParams{}, fmt.Errorf("making instance id: %w", err)
	}

	started := map[string]any{"definition": g.Def.Name, "version": g.Def.Version}
	var state json.RawMessage
	if parent != nil {
		started["parent_instance_id"] = parent.Instance
		state = mustJSON(instState{Parent: parent})
	}
	inst := store.Instance{
		ID: id.String(), DefinitionName: g.Def.Name, DefinitionVersion: g.Def.Version,
		Status: store.InstanceRunning, Input: input, Data: input, StartKey: startKey,
		State: state, CreatedAt: now, UpdatedAt: now, NextPointer: 2,
	}
	params := store.InstanceCreateParams{
		Instance: inst,
		Steps: []store.Step{{
			InstanceID: inst.ID, ID: 1, StepID: definition.RootID,
			Status: store.StepPending, Work: true, CreatedAt: now,
		}},
		Audit: []store.AuditEvent{{
			InstanceID: inst.ID, Type: auditInstanceStarted, At: now, Data: mustJSON(started),
		}},
		StartKey: startKey,
		KeyTTL:   e.opts.StartKeyTTL,
		Now:      now,
	}
	if startKey != "" {
		hash, err := inputHash(input)
		if err != nil {
			return store.InstanceCreateParams{}, err
		}
		params.InputHash = hash
	}
	if g.Deadline > 0 {
		params.Timers = append(params.Timers, store.Timer{
			InstanceID: inst.ID, Kind: store.TimerDeadline, FireAt: now.Add(g.Deadline),
			WhilePaused: true,
		})
	}

	return params, nil
}

func (e *Engine) startGraph(ctx context.Context, p StartParams) (*definition.Graph, error) {
	if p.Definition == "" {
		return nil, invalid("definition", "required")
	}
	if p.Version < 0 {
		return nil, invalid("version", "must not be negative")
	}
	if p.Version == 0 {
		return e.defs.newest(ctx, p.Definition)
	}

	rec, err := e.store.DefinitionGet(ctx, p.Definition, p.Version)
	if err != nil {
		return nil, err
	}
	if rec.Status == store.DefinitionDeprecated {
		return nil, fmt.Errorf("definition %s v%d: %w", p.Definition, p.Version, store.ErrDeprecated)
	}

	return e.defs.graph(ctx, p.Definition, p.Version)
}

// inputHash hashes a start input by its meaning: keys in any order and
// any spacing give one hash, numbers are compared by their text.
func inputHash(input json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", invalid("input", "malformed JSON: %v", err)
	}

	canonical, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding input: %w", err)
	}
	sum := sha256.Sum256(canonical)

	return hex.EncodeToString(sum[:]), nil
}

// checkInput validates a start input and returns it compacted.
func (e *Engine) checkInput(g *definition.Graph, raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	if len(raw) > e.opts.MaxPayloadBytes {
		return nil, fmt.Errorf("input: %d bytes over the %d byte limit: %w",
			len(raw), e.opts.MaxPayloadBytes, ErrTooLarge)
	}

	v, err := decodeJSON(raw)
	if err != nil {
		return nil, invalid("input", "malformed JSON: %v", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, invalid("input", "must be a JSON object")
	}

	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, invalid("input", "malformed JSON: %v", err)
	}
	if g.Schema != nil {
		if err := g.Schema.Validate(buf.Bytes()); err != nil {
			return nil, invalid("input", "%v", err)
		}
	}

	return buf.Bytes(), nil
}

// Pause stops new steps of a running instance from starting; attempts in
// flight go on and their results are recorded.
func (e *Engine) Pause(ctx context.Context, id, reason string) error {
	return e.command(ctx, id, func(r *run) error { return r.pause(reason) })
}

// Resume lets a paused instance go on.
func (e *Engine) Resume(ctx context.Context, id string) error {
	return e.command(ctx, id, func(r *run) error { return r.resume() })
}

// Cancel cancels an instance: in-flight attempts drain, then its
// on_cancel steps run, then it is cancelled.
func (e *Engine) Cancel(ctx context.Context, id, reason string) error {
	return e.command(ctx, id, func(r *run) error { return r.cancel(reason) })
}

// Terminate ends an instance at once, without cleanup.
func (e *Engine) Terminate(ctx context.Context, id, reason string) error {
	return e.command(ctx, id, func(r *run) error { return r.terminate(reason) })
}

// command applies a command to an instance under its lease, as one
// transition together with any other work the instance has.
func (e *Engine) command(ctx context.Context, id string, apply func(*run) error) error {
	if id == "" {
		return invalid("instance_id", "required")
	}

	// A finished instance takes no command, and its definition version
	// may be gone: answer before loading it.
	inst, err := e.store.InstanceGet(ctx, id)
	if err != nil {
		return err
	}
	if inst.Status.Final() {
		return fmt.Errorf("instance %s is %s: %w", id, inst.Status, ErrFinished)
	}

	return e.leased(ctx, id, apply)
}

// leased takes the instance's lease, waiting while another node holds
// it, and applies the command under it.
func (e *Engine) leased(ctx context.Context, id string, apply func(*run) error) error {
	unlock := e.locks.lock(id)
	defer unlock()

	deadline := time.Now().Add(10 * time.Second)
	for {
		inst, err := e.store.InstanceLease(ctx, id, e.opts.NodeID, e.opts.LeaseTTL)
		if errors.Is(err, store.ErrLeaseLost) {
			if time.Now().After(deadline) {
				return fmt.Errorf("instance %s: %w", id, ErrBusy)
			}
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}

		cmdErr, err := e.commandOnce(ctx, inst, apply)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}

		return cmdErr
	}
}

func (e *Engine) commandOnce(ctx context.Context, inst store.Instance, apply func(*run) error) (error, error) {
	ld, err := e.store.InstanceLoad(ctx, store.InstanceLoadParams{
		InstanceID: inst.ID, Now: e.clock.Now(), All: true,
	})
	if err != nil {
		return nil, fmt.Errorf("loading instance %s: %w", inst.ID, err)
	}

	r, err := e.newRun(ctx, ld, true)
	if err != nil {
		return nil, err
	}

	r.applyReports()
	cmdErr := apply(r)
	r.process()

	return cmdErr, e.commit(ctx, r)
}

// commit writes a run's transition and acts on what it changed.
func (e *Engine) commit(ctx context.Context, r *run) error {
	t, err := r.transition()
	if err != nil {
		return err
	}

	if err := e.store.TransitionApply(ctx, []*store.Transition{t})[0]; err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			e.counters.Conflicts.Add(1)
		case errors.Is(err, store.ErrLeaseLost):
			e.counters.LeaseLost.Add(1)
		}
		return fmt.Errorf("applying transition of %s: %w", r.inst.ID, err)
	}

	e.counters.Transitions.Add(1)
	if r.dispatched > 0 {
		e.counters.Dispatched.Add(int64(r.dispatched))
		e.tasksReady()
	}
	if len(r.stopped) > 0 {
		e.handlers.cancelInstance(r.inst.ID)
		e.stopping(ctx, r.inst, r.stopped)
	}
	if r.final {
		inst := r.inst
		inst.Data, inst.State = t.Instance.Data, t.Instance.State
		inst.UpdatedAt = t.Now
		e.ended(ctx, inst)
	}
	if len(t.SubscriptionsAdd) > 0 || len(t.Creates) > 0 || len(t.Reports) > 0 {
		e.wake(e.wakeSched)
	}

	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Instance returns an instance.
func (e *Engine) Instance(ctx context.Context, id string) (store.Instance, error) {
	inst, err := e.store.InstanceGet(ctx, id)
	if err != nil {
		return store.Instance{}, err
	}

	return inst, nil
}

// Steps returns every step of an instance, attempts and partial results
// included.
func (e *Engine) Steps(ctx context.Context, id string) ([]store.Step, error) {
	if _, err := e.Instance(ctx, id); err != nil {
		return nil, err
	}

	steps, err := e.store.StepList(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("listing steps of %s: %w", id, err)
	}

	return steps, nil
}

// Audit lists an instance's audit rows after a seq.
func (e *Engine) Audit(ctx context.Context, id string, afterSeq int64, limit int) ([]store.AuditEvent, error) {
	if limit <= 0 {
		limit = 1000
	}

	evs, err := e.store.AuditList(ctx, id, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("listing audit of %s: %w", id, err)
	}

	return evs, nil
}

// ListInstances lists instances by filter.
func (e *Engine) ListInstances(ctx context.Context, f store.InstanceFilter) (store.InstancePage, error) {
	page, err := e.store.InstanceList(ctx, f)
	if err != nil {
		return store.InstancePage{}, err
	}

	return page, nil
}

// Wait blocks until the instance reaches a final status, or ctx ends,
// and returns it.
func (e *Engine) Wait(ctx context.Context, id string) (store.Instance, error) {
	for delay := time.Millisecond; ; delay = min(delay*2, 50*time.Millisecond) {
		inst, err := e.Instance(ctx, id)
		if err != nil {
			return store.Instance{}, err
		}
		if inst.Status.Final() {
			return inst, nil
		}
		if err := sleep(ctx, delay); err != nil {
			return inst, err
		}
	}
}

// PublishParams is an event to publish.
type PublishParams struct {
	Name string
	Key  string
	Data json.RawMessage
	// Time is when the event becomes visible; zero means now.
	Time time.Time
	// InstanceID, when set, limits delivery to that instance.
	InstanceID string
}

// PublishEvent stores an event durably and delivers it to the waits
// that match it now or later.
func (e *Engine) PublishEvent(ctx context.Context, p PublishParams) (store.Event, error) {
	if p.Name == "" {
		return store.Event{}, invalid("name", "required")
	}
	if len(p.Data) > e.opts.MaxPayloadBytes {
		return store.Event{}, fmt.Errorf("data: %w", ErrTooLarge)
	}
	if len(bytes.TrimSpace(p.Data)) == 0 {
		p.Data = json.RawMessage("null")
	}
	if !json.Valid(p.Data) {
		return store.Event{}, invalid("data", "malformed JSON")
	}

	if p.InstanceID != "" {
		inst, err := e.store.InstanceGet(ctx, p.InstanceID)
		if err != nil {
			return store.Event{}, err
		}
		if inst.Status.Final() {
			return store.Event{}, fmt.Errorf("instance %s is %s: %w", p.InstanceID, inst.Status, ErrFinished)
		}
	}

	now := e.clock.Now()
	if p.Time.IsZero() {
		p.Time = now
	}

	ev, err := e.store.EventPublish(ctx, store.Event{
		Name: p.Name, Key: p.Key, Data: p.Data, Time: p.Time,
		InstanceID: p.InstanceID, PublishedAt: now,
	})
	if err != nil {
		return store.Event{}, err
	}
	e.wake(e.wakeSched)

	return ev, nil
}

// ReportParams is the outcome of one attempt, sent by whoever ran it.
type ReportParams struct {
	InstanceID string
	PointerID  int64
	Attempt    int
	Token      string
	// Output is the result of a completed attempt; Err, when set, fails
	// the attempt instead.
	Output json.RawMessage
	Err    *Error
}

// Report records the outcome of an attempt. Only the current attempt
// counts: a duplicate is answered with the stored outcome, a late one
// is audited and refused with ErrLate.
func (e *Engine) Report(ctx context.Context, p ReportParams) (store.ReportResult, error) {
	params := store.StepReportParams{
		InstanceID: p.InstanceID, PointerID: p.PointerID, Attempt: p.Attempt,
		Token: p.Token, Kind: store.ReportCompleted, Output: p.Output, Now: e.clock.Now(),
	}
	if p.Err != nil {
		params.Kind = store.ReportFailed
		params.Output = nil
		params.Error = boundedError(p.Err)
	} else if len(p.Output) > 0 && !json.Valid(p.Output) {
		return store.ReportResult{}, invalid("output", "malformed JSON")
	} else if len(p.Output) > e.opts.MaxPayloadBytes {
		// The attempt fails by the step's retry policy; the payload is
		// never stored.
		params.Kind = store.ReportFailed
		params.Output = nil
		params.Error = outputTooLarge(len(p.Output), e.opts.MaxPayloadBytes)
	}

	res, err := e.store.StepReport(ctx, params)
	if err != nil {
		return store.ReportResult{}, err
	}
	if res.Outcome == store.ReportLate {
		return res, fmt.Errorf("step %s/%d attempt %d: %s: %w", p.InstanceID, p.PointerID, p.Attempt, res.Reason, ErrLate)
	}
	if res.Outcome == store.ReportAccepted {
		e.wake(e.wakeSched)
		// The report deleted the attempt's task row: its service has a
		// slot free.
		e.tasksReady()
	}

	return res, nil
}
