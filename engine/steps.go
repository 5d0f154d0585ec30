package engine

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/google/uuid"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// activate starts a pending pointer. While the instance is paused it
// stays pending; while it is cancelling only cleanup steps start.
func (r *run) activate(p *ptr) {
	r.touch(p)
	if r.inst.Status == store.InstancePaused {
		p.row.Work = true
		return
	}
	if r.inst.Status == store.InstanceCancelling && !r.inCleanup(p) {
		r.cancelPtr(p)
		return
	}

	p.row.Work = false
	p.row.StartedAt = r.now
	if p.st.Frame == frameOutcomes {
		r.runOutcomes(p)
		return
	}
	if p.st.Frame == frameBeside {
		r.ist.Pending++
		r.armBeside(p)
		return
	}
	if p.st.Frame != "" {
		p.row.Status = store.StepRunning
		r.startBlock(p, p.st.Block)
		return
	}

	switch p.node.Kind {
	case definition.KindTask:
		r.dispatch(p)
	case definition.KindSequence:
		p.row.Status = store.StepRunning
		if p.st.Unwinding {
			r.nextCompensation(p)
			return
		}
		r.startBlock(p, definition.BlockSteps)
	case definition.KindSaga:
		r.startSaga(p)
	case definition.KindParallel:
		r.startParallel(p)
	case definition.KindForeach:
		r.startForeach(p)
	case definition.KindIf:
		r.startIf(p)
	case definition.KindSwitch:
		r.startSwitch(p)
	case definition.KindWhile:
		p.row.Status = store.StepRunning
		r.nextLoop(p)
	case definition.KindDelay:
		r.startDelay(p)
	case definition.KindWait:
		r.startWait(p)
	case definition.KindWorkflow:
		r.startChild(p)
	case definition.KindSchedule, definition.KindRecur:
		r.startBeside(p)
	case definition.KindGoto:
		r.jump(p)
	case definition.KindEnd:
		r.end(p)
	case definition.KindUserTask:
		r.startUserTask(p)
	default:
		r.fail(fmt.Errorf("step %s: kind %q cannot run", p.node.ID, p.node.Kind))
	}
}

// startBlock runs the first step of a block of p, or completes p when
// the block is empty.
func (r *run) startBlock(p *ptr, block string) {
	nodes := p.node.Block(block)
	p.st.Block = block
	p.st.Idx = 0
	r.touch(p)
	if len(nodes) == 0 {
		r.blockDone(p)
		return
	}

	r.spawn(p, nodes[0], 0, ptrState{})
}

// blockDone finishes a pointer whose block ran to its end.
func (r *run) blockDone(p *ptr) {
	if p.st.Frame == frameIteration && p.node.Result != nil {
		out, err := p.node.Result.Eval(r.env(p))
		if err != nil {
			r.failInstance("expression_failed", errorJSON(p, &store.StepError{
				Code: "expression_failed", Message: err.Error(),
			}))
			return
		}
		r.complete(p, out, true)
		return
	}

	r.complete(p, nil, false)
}

func (r *run) startParallel(p *ptr) {
	p.row.Status = store.StepRunning
	p.st.Outstanding = p.node.Branches
	r.touch(p)
	for i := range p.node.Branches {
		block := fmt.Sprintf("%s:%d", definition.BlockBranch, i)
		r.spawn(p, p.node, i, ptrState{Frame: frameBranch, Block: block})
		if r.final || r.err != nil || p.row.Status.Final() {
			return
		}
	}
}

func (r *run) startForeach(p *ptr) {
	p.row.Status = store.StepRunning
	v, err := p.node.Items.Eval(r.env(p))
	if err != nil {
		r.exprFailed(p, err)
		return
	}

	var items []any
	switch t := v.(type) {
	case nil:
	case []any:
		items = t
	default:
		r.exprFailed(p, fmt.Errorf("items %q gave %T, want a list", p.node.Items.Source, v))
		return
	}

	p.st.Items = items
	p.st.ItemCount = len(items)
	r.touch(p)
	if len(items) == 0 {
		r.finishForeach(p)
		return
	}

	r.fillForeach(p)
}

// fillForeach starts iterations up to the concurrency cap.
func (r *run) fillForeach(p *ptr) {
	limit := 1
	if p.node.Parallel {
		limit = p.node.MaxConcurrency
		if limit <= 0 {
			limit = math.MaxInt
		}
	}

	for len(p.st.Items) > 0 && p.st.Running < limit {
		i, item := p.st.Next, p.st.Items[0]
		p.st.Items = p.st.Items[1:]
		if len(p.st.Items) == 0 {
			p.st.Items = nil
		}
		p.st.Next++
		p.st.Running++
		r.touch(p)
		st := ptrState{
			Frame: frameIteration, Block: definition.BlockSteps,
			Item: item, Index: i, HasItem: true,
		}
		r.spawn(p, p.node, i, st)
		if r.final || r.err != nil || p.row.Status.Final() {
			return
		}
	}
}

func (r *run) finishForeach(p *ptr) {
	if p.node.Result == nil || p.node.Output == nil {
		r.complete(p, nil, false)
		return
	}

	kids, err := r.e.store.StepChildren(r.ctx, r.inst.ID, p.row.ID)
	if err != nil {
		r.fail(fmt.Errorf("reading foreach results: %w", err))
		return
	}

	rows := make(map[int64]store.Step, len(kids))
	for _, k := range kids {
		rows[k.ID] = k
	}
	for _, q := range r.ptrs {
		if q.row.ParentID == p.row.ID && q.row.Status.Final() {
			rows[q.row.ID] = q.row
		}
	}

	results := make([]any, p.st.ItemCount)
	for _, k := range rows {
		if k.Slot < 0 || k.Slot >= len(results) || k.Status != store.StepCompleted {
			continue
		}
		out, err := decodeJSON(k.Output)
		if err != nil {
			r.fail(fmt.Errorf("decoding iteration %d output: %w", k.Slot, err))
			return
		}
		results[k.Slot] = out
	}

	r.complete(p, results, true)
}

func (r *run) startIf(p *ptr) {
	p.row.Status = store.StepRunning
	ok, err := p.node.Condition.EvalBool(r.env(p))
	if err != nil {
		r.exprFailed(p, err)
		return
	}

	if ok {
		r.startBlock(p, definition.BlockSteps)
		return
	}
	r.startBlock(p, definition.BlockElse)
}

func (r *run) startSwitch(p *ptr) {
	p.row.Status = store.StepRunning
	env := r.env(p)
	for i, when := range p.node.When {
		ok, err := when.EvalBool(env)
		if err != nil {
			r.exprFailed(p, err)
			return
		}
		if ok {
			r.startBlock(p, fmt.Sprintf("%s:%d", definition.BlockCase, i))
			return
		}
	}

	r.startBlock(p, definition.BlockDefault)
}

// nextLoop starts the next while iteration or completes the loop.
func (r *run) nextLoop(p *ptr) {
	ok, err := p.node.Condition.EvalBool(r.env(p))
	if err != nil {
		r.exprFailed(p, err)
		return
	}
	if !ok {
		r.complete(p, nil, false)
		return
	}

	if p.st.Loops >= p.node.MaxIterations {
		r.failInstance("max_iterations", errorJSON(p, &store.StepError{
			Code:    "max_iterations",
			Message: fmt.Sprintf("while %s passed %d iterations", p.node.ID, p.node.MaxIterations),
		}))
		return
	}

	st := ptrState{Frame: frameIteration, Block: definition.BlockSteps, Iter: p.st.Loops}
	r.spawn(p, p.node, p.st.Loops, st)
}

func (r *run) startDelay(p *ptr) {
	env := r.env(p)
	var at = r.now
	if p.node.Duration != nil {
		d, err := p.node.Duration.Eval(env)
		if err != nil {
			r.exprFailed(p, err)
			return
		}
		at = r.now.Add(d)
	} else {
		t, err := p.node.Until.EvalTime(env)
		if err != nil {
			r.exprFailed(p, err)
			return
		}
		at = t
	}

	p.row.Status = store.StepSleeping
	r.audit(auditDelayStarted, p, map[string]any{"until": at.UTC()})
	r.setTimer(p, store.TimerDelay, at, false)
}

func (r *run) startWait(p *ptr) {
	env := r.env(p)
	key, err := p.node.Key.EvalString(env)
	if err != nil {
		r.exprFailed(p, err)
		return
	}

	asOf := r.inst.CreatedAt
	if p.node.AsOf != nil {
		asOf, err = p.node.AsOf.EvalTime(env)
		if err != nil {
			r.exprFailed(p, err)
			return
		}
	}

	if !r.armTimeout(p, env) {
		return
	}

	p.st.Key = key
	p.row.Status = store.StepWaiting
	r.tr.SubscriptionsAdd = append(r.tr.SubscriptionsAdd, store.Subscription{
		InstanceID: r.inst.ID, PointerID: p.row.ID, Name: p.node.Event, Key: key,
		AsOf: asOf, CreatedAt: r.now,
	})
	r.audit(auditWaitStarted, p, map[string]any{"event": p.node.Event, "key": key})
}

// dispatch starts a new attempt of a task step: it writes the dispatch
// row that a worker claims.
func (r *run) dispatch(p *ptr) {
	p.row.Attempt++
	p.row.Report = nil
	p.row.Service = p.node.Service
	p.row.Action = p.node.Action
	r.touch(p)

	input, err := r.taskInput(p)
	if err != nil {
		r.attemptFailed(p, err, auditStepFailed)
		return
	}

	p.row.Status = store.StepDispatched
	p.row.Input = input
	p.row.Token = uuid.NewString()
	p.row.Error = nil
	r.tr.TasksAdd = append(r.tr.TasksAdd, store.Task{
		InstanceID:     r.inst.ID,
		PointerID:      p.row.ID,
		StepID:         p.node.ID,
		Attempt:        p.row.Attempt,
		Service:        p.node.Service,
		Action:         p.node.Action,
		Input:          input,
		IdempotencyKey: fmt.Sprintf("%s/%d/%d", r.inst.ID, p.row.ID, p.row.Attempt),
		Token:          p.row.Token,
		VisibleAt:      r.now,
		StartToClose:   p.node.Timeouts.StartToClose,
		Heartbeat:      p.node.Timeouts.Heartbeat,
		CreatedAt:      r.now,
	})
	if d := p.node.Timeouts.ScheduleToStart; d > 0 {
		r.setTimer(p, store.TimerScheduleToStart, r.now.Add(d), true)
	}
	r.dispatched++
	r.audit(auditStepDispatched, p, map[string]any{"service": p.node.Service, "action": p.node.Action})
}

// taskInput evaluates a task's input mapping; without one the task gets
// the instance data.
func (r *run) taskInput(p *ptr) (json.RawMessage, *store.StepError) {
	var v any = r.data
	if p.node.Input != nil {
		out, err := p.node.Input.Eval(r.env(p))
		if err != nil {
			return nil, &store.StepError{Code: "input_failed", Message: err.Error()}
		}
		v = out
	}

	raw, err := json.Marshal(v)
	if err != nil {
		return nil, &store.StepError{Code: "input_failed", Message: err.Error()}
	}
	if len(raw) > r.e.opts.MaxPayloadBytes {
		return nil, &store.StepError{
			Code: "payload_too_large",
			Message: fmt.Sprintf("payload too large: input of %d bytes is over the %d byte limit",
				len(raw), r.e.opts.MaxPayloadBytes),
		}
	}

	return raw, nil
}

// exprFailed fails the instance when an expression of a control step
// cannot be evaluated.
func (r *run) exprFailed(p *ptr, err error) {
	p.row.Status = store.StepFailed
	p.row.EndedAt = r.now
	serr := &store.StepError{Code: "expression_failed", Message: err.Error()}
	p.row.Error = mustJSON(serr)
	r.touch(p)
	r.audit(auditStepFailed, p, serr)
	r.failStep(p, "expression_failed", errorJSON(p, serr))
}

// complete finishes p with its output and tells its parent.
func (r *run) complete(p *ptr, out any, hasOut bool) {
	p.row.Status = store.StepCompleted
	p.row.EndedAt = r.now
	p.row.Work = false
	r.touch(p)
	r.clearTimers(p.row.ID)

	if hasOut {
		raw, err := json.Marshal(out)
		if err != nil {
			r.fail(fmt.Errorf("encoding output of step %d: %w", p.row.ID, err))
			return
		}
		p.row.Output = raw
		if p.node.Output != nil && p.st.Frame == "" {
			p.node.Output.Set(r.data, out)
			r.dataDirty = true
			r.dataGrowth += len(raw)
			if size, over := r.dataOverLimit(); over {
				r.dataTooLarge(p, size)
				return
			}
		}
	}

	if p.st.Frame == "" && recorded(p.node.Kind) {
		r.record(p, out)
		r.audit(auditStepCompleted, p, nil)
	}

	if p.st.Frame == "" && p.node.Compensates {
		r.remember(p, out)
	}
	if p.st.Frame == "" && p.node.Kind == definition.KindSaga {
		r.handUp(p)
	}
	if p.st.Frame == "" && p.node.Outcomes > 0 {
		r.startOutcomes(p, out)
		return
	}
	r.childDone(p)
}

// recorded reports whether steps of kind k keep their output in scope.
func recorded(k definition.Kind) bool {
	return k == definition.KindTask || k == definition.KindWait || k == definition.KindWorkflow ||
		k == definition.KindUserTask
}

// record keeps a step's output in the nearest scope (the root, or the
// foreach or while iteration around it).
func (r *run) record(p *ptr, out any) {
	for s := r.parent(p); s != nil; s = r.parent(s) {
		if s.row.ParentID == 0 || s.st.Frame == frameIteration || s.st.Frame == frameCompensation {
			if s.st.Scope == nil {
				s.st.Scope = map[string]any{}
			}
			s.st.Scope[p.node.ID] = map[string]any{"output": out}
			r.touch(s)
			return
		}
	}
}

// childDone tells the parent of p that p completed.
func (r *run) childDone(p *ptr) {
	if r.inst.Status == store.InstanceCancelling && !r.inCleanup(p) {
		return
	}

	if p.st.Frame == frameBeside {
		r.besideDone(p)
		return
	}
	parent := r.parent(p)
	if parent == nil {
		if r.err == nil {
			r.topDone(p)
		}
		return
	}
	if parent.row.Status.Final() {
		return
	}
	r.touch(parent)

	switch {
	case parent.st.Frame == frameBeside && parent.node.Kind == definition.KindRecur:
		r.recurNext(parent)
	case parent.st.Unwinding:
		r.compensationDone(parent, p)
	case parent.st.Frame == frameOutcomes:
		r.outcomeDone(parent)
	case parent.st.Frame != "":
		r.nextInBlock(parent)
	case parent.node.Kind == definition.KindParallel:
		parent.st.Outstanding--
		if parent.st.Outstanding <= 0 {
			r.complete(parent, nil, false)
		}
	case parent.node.Kind == definition.KindForeach:
		parent.st.Running--
		parent.st.Done++
		if parent.st.Done >= parent.st.ItemCount {
			r.finishForeach(parent)
			return
		}
		r.fillForeach(parent)
	case parent.node.Kind == definition.KindWhile:
		parent.st.Loops++
		r.nextLoop(parent)
	default:
		r.nextInBlock(parent)
	}
}

// nextInBlock moves a block-running pointer to its next step.
func (r *run) nextInBlock(p *ptr) {
	nodes := p.node.Block(p.st.Block)
	p.st.Idx++
	if p.st.Idx >= len(nodes) {
		r.blockDone(p)
		return
	}

	r.spawn(p, nodes[p.st.Idx], p.st.Idx, ptrState{})
}

// topDone ends the instance when its root or cleanup pointer finishes.
func (r *run) topDone(p *ptr) {
	if p.row.StepID == definition.CancelID {
		r.finalize(store.InstanceCancelled, r.ist.CancelReason, nil)
		return
	}
	if r.ist.Pending > 0 {
		p.row.Status = store.StepRunning
		p.row.EndedAt = zeroTime
		r.ist.MainDone = true
		return
	}

	r.completeInstance(p)
}

// completeInstance ends the instance as completed, with its output.
func (r *run) completeInstance(p *ptr) {
	var out any = r.data
	if r.g.Output != nil {
		v, err := r.g.Output.Eval(r.env(p))
		if err != nil {
			r.failInstance("expression_failed", mustJSON(&store.StepError{
				Code: "expression_failed", Message: err.Error(),
			}))
			return
		}
		out = v
	}

	raw, err := json.Marshal(out)
	if err != nil {
		r.fail(fmt.Errorf("encoding instance output: %w", err))
		return
	}
	r.inst.Output = raw
	if r.inst.Status == store.InstancePaused {
		// A paused instance goes only to running, cancelling or
		// terminated: its end waits for the resume.
		r.ist.EndOnResume = true
		return
	}
	r.finalize(store.InstanceCompleted, "", nil)
}

// env builds what p's expressions see.
func (r *run) env(p *ptr) definition.Env {
	var chain []*ptr
	for q := p; q != nil; q = r.parent(q) {
		chain = append(chain, q)
	}

	steps := map[string]any{}
	env := definition.Env{"input": r.input, "data": r.data, "steps": steps}
	itemSet, iterSet := false, false
	for i := len(chain) - 1; i >= 0; i-- {
		q := chain[i]
		for k, v := range q.st.Scope {
			steps[k] = v
		}
	}
	for _, q := range chain {
		if q.st.Frame == frameBeside && q.st.HasItem && !itemSet {
			env["item"], env["index"] = q.st.Item, q.st.Index
			itemSet = true
		}
		if q.st.Frame == frameCompensation {
			if !itemSet {
				env["item"], env["index"] = q.st.Item, q.st.Index
			}
			if !iterSet {
				env["iteration"] = q.st.Iter
			}
			itemSet, iterSet = true, true
			continue
		}
		if q.st.Frame != frameIteration {
			continue
		}
		if q.st.HasItem && !itemSet {
			env["item"], env["index"] = q.st.Item, q.st.Index
			itemSet = true
		}
		if !q.st.HasItem && !iterSet {
			env["iteration"] = q.st.Iter
			iterSet = true
		}
	}
	if !itemSet {
		env["item"], env["index"] = nil, 0
	}
	if !iterSet {
		env["iteration"] = 0
	}

	return env
}

func mustJSON(v any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", v, err))
	}

	return raw
}

// errorJSON describes a step failure for the instance's Error field.
func errorJSON(p *ptr, serr *store.StepError) json.RawMessage {
	return mustJSON(map[string]any{
		"step_id": p.node.ID,
		"attempt": p.row.Attempt,
		"code":    serr.Code,
		"message": serr.Message,
	})
}

// dataOverLimit reports whether the instance data has grown over
// Options.MaxDataBytes, and its size then. It encodes the data only when
// the loaded size plus what this transition wrote could be over.
func (r *run) dataOverLimit() (int, bool) {
	limit := r.e.opts.MaxDataBytes
	if len(r.inst.Data)+r.dataGrowth <= limit {
		return 0, false
	}

	raw, err := json.Marshal(r.data)
	if err != nil {
		r.fail(fmt.Errorf("encoding data: %w", err))
		return 0, false
	}
	r.dataGrowth = len(raw) - len(r.inst.Data)

	return len(raw), len(raw) > limit
}

// dataTooLarge fails the instance because p's output made its data too
// large; the data stays as it was loaded.
func (r *run) dataTooLarge(p *ptr, size int) {
	data, err := decodeJSON(r.inst.Data)
	if err != nil {
		r.fail(fmt.Errorf("decoding data: %w", err))
		return
	}
	r.data, _ = data.(map[string]any)
	if r.data == nil {
		r.data = map[string]any{}
	}
	r.dataDirty, r.dataGrowth = false, 0

	serr := &store.StepError{
		Code: "payload_too_large",
		Message: fmt.Sprintf("payload too large: instance data of %d bytes is over the %d byte limit",
			size, r.e.opts.MaxDataBytes),
	}
	r.audit(auditStepFailed, p, serr)
	r.failInstance("data_too_large", errorJSON(p, serr))
}

// armTimeout sets the wait timeout of p, a wait or user task, from its
// node's timeout, when it has one; false when the expression failed,
// which fails the instance.
func (r *run) armTimeout(p *ptr, env definition.Env) bool {
	if p.node.Timeout == nil {
		return true
	}

	d, err := p.node.Timeout.Eval(env)
	if err != nil {
		r.exprFailed(p, err)
		return false
	}
	r.setTimer(p, store.TimerWaitTimeout, r.now.Add(d), false)

	return true
}
