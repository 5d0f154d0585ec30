package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// Audit event types the engine writes (the store adds step_started and
// report_late).
const (
	auditInstanceStarted   = "instance_started"
	auditInstanceCompleted = "instance_completed"
	auditInstanceFailed    = "instance_failed"
	auditInstancePaused    = "instance_paused"
	auditInstanceResumed   = "instance_resumed"
	auditCancelRequested   = "instance_cancel_requested"
	auditCleanupStarted    = "instance_cleanup_started"
	auditInstanceCancelled = "instance_cancelled"
	auditInstanceTerminate = "instance_terminated"
	auditStepDispatched    = "step_dispatched"
	auditStepCompleted     = "step_completed"
	auditStepFailed        = "step_failed"
	auditStepTimedOut      = "step_timed_out"
	auditRetryScheduled    = "step_retry_scheduled"
	auditStepCancelled     = "step_cancelled"
	auditDelayStarted      = "delay_started"
	auditWaitStarted       = "wait_started"
	auditEventReceived     = "event_received"
	auditWaitTimedOut      = "wait_timed_out"
	auditWaitAbandoned     = "wait_abandoned"
)

// run builds one transition of one instance: it holds the loaded active
// part, applies inputs to it, and collects every write.
type run struct {
	ctx   context.Context
	e     *Engine
	g     *definition.Graph
	inst  store.Instance
	ist   instState
	input any
	data  map[string]any
	now   time.Time

	ptrs      map[int64]*ptr
	timers    []store.Timer
	loadedAll bool

	tr        store.Transition
	timerOps  map[store.TimerKey]*store.Timer
	dataDirty bool
	// dataGrowth is how many bytes of output this run wrote into data,
	// an upper bound of its growth until dataOverLimit measures it.
	dataGrowth int
	final      bool
	keepBlocks bool
	jumps      int
	dispatched int
	// stopped are the attempts in flight this run asked to stop.
	stopped []Attempt
	err     error
}

func (e *Engine) newRun(ctx context.Context, ld store.Loaded, all bool) (*run, error) {
	inst := ld.Instance
	g, err := e.defs.graph(ctx, inst.DefinitionName, inst.DefinitionVersion)
	if err != nil {
		return nil, err
	}

	r := &run{
		ctx:       ctx,
		e:         e,
		g:         g,
		inst:      inst,
		now:       e.clock.Now(),
		ptrs:      make(map[int64]*ptr, len(ld.Steps)),
		timers:    ld.Timers,
		loadedAll: all,
		timerOps:  map[store.TimerKey]*store.Timer{},
	}
	if err := r.decodeInstance(); err != nil {
		return nil, err
	}

	for _, row := range ld.Steps {
		p, err := decodePtr(g, row)
		if err != nil {
			return nil, err
		}
		r.ptrs[row.ID] = p
	}

	return r, nil
}

func (r *run) decodeInstance() error {
	if len(r.inst.State) > 0 {
		if err := json.Unmarshal(r.inst.State, &r.ist); err != nil {
			return fmt.Errorf("decoding instance state: %w", err)
		}
	}

	input, err := decodeJSON(r.inst.Input)
	if err != nil {
		return fmt.Errorf("decoding input: %w", err)
	}
	r.input = input

	data, err := decodeJSON(r.inst.Data)
	if err != nil {
		return fmt.Errorf("decoding data: %w", err)
	}
	m, ok := data.(map[string]any)
	if !ok {
		m = map[string]any{}
	}
	r.data = m

	return nil
}

// decodeJSON reads JSON keeping numbers exact where expressions cannot
// compute with them exactly.
func decodeJSON(raw []byte) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}

	return definition.Normalize(v), nil
}

// loadAll adds every non-final step of the instance to the run; commands
// and endings need them all.
func (r *run) loadAll() {
	if r.loadedAll || r.err != nil {
		return
	}
	r.loadedAll = true

	ld, err := r.e.store.InstanceLoad(r.ctx, store.InstanceLoadParams{
		InstanceID: r.inst.ID, Now: r.now, All: true,
	})
	if err != nil {
		r.fail(fmt.Errorf("loading instance: %w", err))
		return
	}

	for _, row := range ld.Steps {
		if _, ok := r.ptrs[row.ID]; ok {
			continue
		}
		p, err := decodePtr(r.g, row)
		if err != nil {
			r.fail(err)
			return
		}
		r.ptrs[row.ID] = p
	}
}

func (r *run) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// sorted returns the loaded pointers in id order.
func (r *run) sorted() []*ptr {
	out := make([]*ptr, 0, len(r.ptrs))
	for _, p := range r.ptrs {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *ptr) int { return int(a.row.ID - b.row.ID) })

	return out
}

// process applies every input the load holds: reports first, then due
// timers in order, then steps waiting to start.
func (r *run) process() {
	if r.inst.Status.Final() {
		return
	}

	r.applyReports()

	for _, t := range r.timers {
		if r.final || r.err != nil {
			return
		}
		r.handleTimer(t)
	}

	r.startPending()
	r.checkWaits()
}

// applyReports applies the reports accepted since the last transition.
// Commands call it before they act, so that what a caller was told was
// accepted (a completion, an answer) counts before a cancel or a pause.
func (r *run) applyReports() {
	if r.inst.Status.Final() {
		return
	}

	for _, p := range r.sorted() {
		if r.final || r.err != nil {
			return
		}
		if p.row.Work && p.row.Report != nil && !p.row.Status.Final() {
			r.handleReport(p)
		}
	}
}

// startPending starts the pointers that wait to start, unless paused.
func (r *run) startPending() {
	if r.inst.Status == store.InstancePaused {
		return
	}

	for _, p := range r.sorted() {
		if r.final || r.err != nil {
			return
		}
		if p.row.Status == store.StepPending && p.row.Work {
			r.activate(p)
		}
	}
}

// transition returns the writes of the run.
func (r *run) transition() (*store.Transition, error) {
	if r.err != nil {
		return nil, r.err
	}

	t := &r.tr
	t.InstanceID = r.inst.ID
	t.Owner = r.inst.LeaseOwner
	t.Epoch = r.inst.LeaseEpoch
	t.Wake = r.inst.Wake
	t.Now = r.now

	for _, p := range r.sorted() {
		if !p.dirty {
			continue
		}
		row, err := p.encode()
		if err != nil {
			return nil, err
		}
		t.Steps = append(t.Steps, row)
	}

	for key, tm := range r.timerOps {
		if tm == nil {
			t.TimersDelete = append(t.TimersDelete, key)
			continue
		}
		t.TimersAdd = append(t.TimersAdd, *tm)
	}

	return t, r.fillInstance(t)
}

func (r *run) fillInstance(t *store.Transition) error {
	st, err := json.Marshal(r.ist)
	if err != nil {
		return fmt.Errorf("encoding instance state: %w", err)
	}
	if string(st) == "{}" {
		st = nil
	}

	data := r.inst.Data
	if r.dataDirty {
		data, err = json.Marshal(r.data)
		if err != nil {
			return fmt.Errorf("encoding data: %w", err)
		}
	}

	t.Instance = store.InstanceUpdate{
		Status:      r.inst.Status,
		Reason:      r.inst.Reason,
		Data:        data,
		Output:      r.inst.Output,
		Error:       r.inst.Error,
		State:       st,
		NextPointer: r.inst.NextPointer,
		EndedAt:     r.inst.EndedAt,
	}

	return nil
}

// audit adds an audit row about p (nil for the instance).
func (r *run) audit(typ string, p *ptr, data any) {
	ev := store.AuditEvent{InstanceID: r.inst.ID, Type: typ, At: r.now}
	if p != nil {
		ev.StepID = p.node.ID
		ev.PointerID = p.row.ID
		ev.Attempt = p.row.Attempt
	}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			r.fail(fmt.Errorf("encoding audit data: %w", err))
			return
		}
		ev.Data = raw
	}

	r.tr.Audit = append(r.tr.Audit, ev)
}

// setTimer schedules a timer, replacing one of the same kind.
func (r *run) setTimer(p *ptr, kind store.TimerKind, at time.Time, whilePaused bool) {
	var id int64
	attempt := 0
	if p != nil {
		id = p.row.ID
		attempt = p.row.Attempt
	}

	r.timerOps[store.TimerKey{PointerID: id, Kind: kind}] = &store.Timer{
		InstanceID:  r.inst.ID,
		PointerID:   id,
		Kind:        kind,
		Attempt:     attempt,
		FireAt:      at,
		WhilePaused: whilePaused,
	}
}

// clearTimer removes a pointer's timer of one kind.
func (r *run) clearTimer(id int64, kind store.TimerKind) {
	r.timerOps[store.TimerKey{PointerID: id, Kind: kind}] = nil
}

// clearTimers removes every timer of a pointer.
func (r *run) clearTimers(id int64) {
	for key := range r.timerOps {
		if key.PointerID == id {
			delete(r.timerOps, key)
		}
	}
	r.timerOps[store.TimerKey{PointerID: id}] = nil
}

// spawn creates a pointer for node under parent and starts it.
func (r *run) spawn(parent *ptr, node *definition.Node, slot int, st ptrState) *ptr {
	p := r.spawnQuiet(parent, node, slot, st)
	r.activate(p)

	return p
}

// spawnQuiet creates a pending pointer for node under parent.
func (r *run) spawnQuiet(parent *ptr, node *definition.Node, slot int, st ptrState) *ptr {
	id := r.inst.NextPointer
	r.inst.NextPointer++

	row := store.Step{
		InstanceID: r.inst.ID,
		ID:         id,
		StepID:     node.ID,
		Slot:       slot,
		Status:     store.StepPending,
		Work:       true,
		CreatedAt:  r.now,
	}
	if parent != nil {
		row.ParentID = parent.row.ID
	}

	p := &ptr{row: row, st: st, node: node, dirty: true}
	r.ptrs[id] = p

	return p
}

// parent returns the loaded parent of p, or nil for a top pointer.
func (r *run) parent(p *ptr) *ptr {
	if p.row.ParentID == 0 {
		return nil
	}

	parent, ok := r.ptrs[p.row.ParentID]
	if !ok {
		r.fail(fmt.Errorf("step %d: parent %d not loaded", p.row.ID, p.row.ParentID))
		return nil
	}

	return parent
}

// top returns the top pointer above p.
func (r *run) top(p *ptr) *ptr {
	for p != nil && p.row.ParentID != 0 {
		p = r.parent(p)
	}

	return p
}

// inCleanup reports whether p belongs to the on_cancel steps.
func (r *run) inCleanup(p *ptr) bool {
	t := r.top(p)
	return t != nil && t.row.StepID == definition.CancelID
}

// touch marks p to be written.
func (r *run) touch(p *ptr) {
	p.dirty = true
}
