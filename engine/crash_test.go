package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// Environment of the crash test. crashChildEnv, when set to a folder,
// makes the test binary run as the crash child on that folder's
// database; crashSeedEnv replays a run of the parent.
const (
	crashChildEnv = "WEFT_CRASH_CHILD"
	crashSeedEnv  = "WEFT_CRASH_SEED"
)

// Size of the crash test: instances started, and task steps each runs.
const (
	crashInstances = 200
	crashTasks     = 7
)

// crashDefinition is a -> parallel{[b1 -> b2] | [foreach c over three
// items, two at a time]} -> d. Every task step adds to a number, so the
// instance's last output proves that each step's output reached it.
const crashDefinition = `
name: crash
version: 1
defaults:
  retry: {max_attempts: 1}
steps:
  - {id: a, type: task, service: crash, action: step, input: {n: input.n}, output: a}
  - id: fan
    type: parallel
    branches:
      - steps:
          - {id: b1, type: task, service: crash, action: step, input: {x: data.a.v}, output: b1}
          - {id: b2, type: task, service: crash, action: step, input: {x: data.b1.v}, output: b2}
      - steps:
          - id: each
            type: foreach
            items: "[1, 2, 3]"
            parallel: true
            max_concurrency: 2
            steps:
              - {id: c, type: task, service: crash, action: step, input: {x: data.a.v, i: item}}
            result: steps.c.output
            output: cs
  - {id: d, type: task, service: crash, action: step, input: {x: data.b2.v, cs: data.cs}, output: d}
`

// crashWant is the d step's value for an instance started with n:
// a = n+1, b1 = 2a, b2 = b1+3, c(i) = 10a+i, d = b2 + the sum of c.
func crashWant(n int) int {
	return 32*(n+1) + 9
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(runCrashChild(dir))
	}

	os.Exit(m.Run())
}

// crashOptions are fastOptions with leases short enough that a restart
// takes over a killed child's instances and tasks quickly.
func crashOptions() engine.Options {
	opts := fastOptions()
	opts.LeaseTTL = time.Second
	opts.TaskLeaseTTL = time.Second

	return opts
}

// TestCrashKillRestartLosesNothing runs 200 instances of a workflow with
// parallel branches and a foreach in a child process, kills the child
// with SIGKILL at seeded random moments, restarts it on the same SQLite
// file each time, then lets it finish. Every instance must complete with
// every step's output, no step whose completion was committed may run
// again, a redelivered attempt keeps its number and idempotency key,
// and the audit stays gap-free.
func TestCrashKillRestartLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test kills and restarts a child process for tens of seconds; skipped under -short")
	}

	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	dir := t.TempDir()
	path := filepath.Join(dir, "weft.db")
	h := newHarnessAt(t, path, crashOptions())
	h.register(crashDefinition)
	h.stop()

	// The deadline only catches a hang: under -race on two cores the
	// whole test takes about half a minute.
	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	kills := 5 + rng.IntN(4)
	landed := 0
	for run := range kills {
		after := 20 + rng.IntN(150)
		jitter := time.Duration(rng.IntN(25)) * time.Millisecond
		if crashRunUntilKilled(ctx, t, dir, run, after, jitter) {
			landed++
		}
	}
	crashRunToEnd(ctx, t, dir, kills)
	t.Logf("seed %d: %d of %d kills landed mid-run, all done in %v",
		seed, landed, kills, time.Since(began).Round(time.Millisecond))

	if landed == 0 {
		t.Fatalf("no kill landed while the child ran: the test checked nothing")
	}

	crashVerify(t, dir)
}

// crashSeed returns the seed of the kill schedule: WEFT_CRASH_SEED when
// set, else the time.
func crashSeed(t *testing.T) uint64 {
	t.Helper()

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with %s=%d)", seed, crashSeedEnv, seed)

	return seed
}

// crashChildProc is a running child and its exit.
type crashChildProc struct {
	cmd    *exec.Cmd
	done   chan error
	output string
}

// startCrashChild runs the test binary as the crash child on dir, its
// output going to a file of its own.
func startCrashChild(t *testing.T, dir string, run int) *crashChildProc {
	t.Helper()

	output := filepath.Join(dir, fmt.Sprintf("child-%d.log", run))
	out, err := os.Create(output)
	if err != nil {
		t.Fatalf("creating child output: %v", err)
	}

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting child %d: %v", run, err)
	}

	c := &crashChildProc{cmd: cmd, done: make(chan error, 1), output: output}
	go func() {
		c.done <- cmd.Wait()
		_ = out.Close()
	}()

	return c
}

// crashRunUntilKilled runs one child until its handlers have logged
// after more calls, waits jitter, and kills it with SIGKILL. It reports
// whether the kill landed, that is whether the child was still running.
func crashRunUntilKilled(ctx context.Context, t *testing.T, dir string, run, after int,
	jitter time.Duration) bool {
	t.Helper()

	calls := newCrashCallCounter(filepath.Join(dir, "calls.log"))
	c := startCrashChild(t, dir, run)
	for calls.count() < after {
		select {
		case err := <-c.done:
			crashCheckChildExit(t, c, run, err)
			return false
		case <-ctx.Done():
			crashKill(t, c)
			t.Logf("child %d output:\n%s", run, crashTail(c.output))
			crashFailStuck(t, dir, fmt.Sprintf("child %d logged no %d calls", run, after))
		case <-time.After(2 * time.Millisecond):
		}
	}

	select {
	case err := <-c.done:
		crashCheckChildExit(t, c, run, err)
		return false
	case <-time.After(jitter):
	}

	crashKill(t, c)
	crashCheckNoRace(t, c, run)

	return true
}

// crashRunToEnd runs a last child until it finds every instance final
// and exits.
func crashRunToEnd(ctx context.Context, t *testing.T, dir string, run int) {
	t.Helper()

	c := startCrashChild(t, dir, run)
	select {
	case err := <-c.done:
		crashCheckChildExit(t, c, run, err)
	case <-ctx.Done():
		crashKill(t, c)
		t.Logf("child %d output:\n%s", run, crashTail(c.output))
		crashFailStuck(t, dir, fmt.Sprintf("last child %d did not finish", run))
	}
}

// crashKill sends SIGKILL to the child and waits for it to die.
func crashKill(t *testing.T, c *crashChildProc) {
	t.Helper()

	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("killing child: %v", err)
	}
	<-c.done
}

func crashCheckChildExit(t *testing.T, c *crashChildProc, run int, err error) {
	t.Helper()

	if err != nil {
		t.Fatalf("child %d exited: %v\n%s", run, err, crashTail(c.output))
	}
	crashCheckNoRace(t, c, run)
}

func crashCheckNoRace(t *testing.T, c *crashChildProc, run int) {
	t.Helper()

	out, err := os.ReadFile(c.output)
	if err != nil {
		t.Fatalf("reading child output: %v", err)
	}
	if bytes.Contains(out, []byte("DATA RACE")) || bytes.Contains(out, []byte("panic:")) {
		t.Fatalf("child %d:\n%s", run, out)
	}
}

// crashFailStuck ends the test with what the database holds.
func crashFailStuck(t *testing.T, dir, what string) {
	t.Helper()

	h := newHarnessAt(t, filepath.Join(dir, "weft.db"), crashOptions())
	page, err := h.e.ListInstances(h.ctx, store.InstanceFilter{
		Status:   []store.InstanceStatus{store.InstanceRunning, store.InstancePaused},
		PageSize: 1000,
	})
	if err != nil {
		t.Fatalf("%s; listing instances: %v", what, err)
	}
	t.Fatalf("%s in time: %d instances not final", what, len(page.Instances))
}

func crashTail(path string) string {
	out, _ := os.ReadFile(path)
	if len(out) > 4000 {
		out = out[len(out)-4000:]
	}

	return string(out)
}

// crashCallCounter counts the handler calls logged since it was made.
type crashCallCounter struct {
	path   string
	offset int64
	calls  int
}

func newCrashCallCounter(path string) *crashCallCounter {
	c := &crashCallCounter{path: path}
	if fi, err := os.Stat(path); err == nil {
		c.offset = fi.Size()
	}

	return c
}

func (c *crashCallCounter) count() int {
	f, err := os.Open(c.path)
	if err != nil {
		return c.calls
	}
	defer f.Close()

	if _, err := f.Seek(c.offset, io.SeekStart); err != nil {
		return c.calls
	}
	more, _ := io.ReadAll(f)
	c.offset += int64(len(more))
	c.calls += bytes.Count(more, []byte("call "))

	return c.calls
}

// runCrashChild is the child process: an engine on dir's database with
// the crash handlers, which starts the instances (idempotently, by start
// key) and exits once every one is final. Its parent kills it at random.
func runCrashChild(dir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := crashChild(context.Background(), dir, log); err != nil {
		log.Error("crash child failed", "err", err)
		return 1
	}

	return 0
}

func crashChild(ctx context.Context, dir string, log *slog.Logger) error {
	st, err := sqlite.Open(ctx, filepath.Join(dir, "weft.db"))
	if err != nil {
		return fmt.Errorf("opening store: %w", err)
	}
	defer st.Close()

	calls, err := os.OpenFile(filepath.Join(dir, "calls.log"),
		os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening call log: %w", err)
	}
	defer calls.Close()

	opts := crashOptions()
	opts.Logger = log
	e := engine.New(st, opts)
	w := &crashWorker{e: e, calls: calls}
	e.Handle("crash", "step", w.handle)
	if err := e.Start(ctx); err != nil {
		return fmt.Errorf("starting engine: %w", err)
	}
	defer e.Stop()

	if err := crashStartAll(ctx, e); err != nil {
		return err
	}

	return crashWaitAllFinal(ctx, e)
}

// crashStartAll starts every instance by its start key, so a restarted
// child finds those started before and starts only the rest.
func crashStartAll(ctx context.Context, e *engine.Engine) error {
	var wg sync.WaitGroup
	errs := make([]error, crashInstances)
	for i := range crashInstances {
		wg.Go(func() {
			_, _, errs[i] = e.StartInstance(ctx, engine.StartParams{
				Definition: "crash",
				Input:      json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
				StartKey:   fmt.Sprintf("crash-%d", i),
			})
		})
	}
	wg.Wait()

	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("starting instances: %w", err)
	}

	return nil
}

func crashWaitAllFinal(ctx context.Context, e *engine.Engine) error {
	for {
		page, err := e.ListInstances(ctx, store.InstanceFilter{
			DefinitionName: "crash",
			Status: []store.InstanceStatus{
				store.InstanceRunning, store.InstancePaused, store.InstanceCancelling,
			},
			PageSize: 1,
		})
		if err != nil {
			return fmt.Errorf("listing instances: %w", err)
		}
		if len(page.Instances) == 0 {
			return nil
		}

		time.Sleep(250 * time.Millisecond)
	}
}

// crashWorker is the child's handler. Each call appends a line to the
// call log (one write on a file opened O_APPEND, no fsync: a killed
// process loses nothing the kernel took):
//
//	call <instance> <pointer> <attempt> <idempotency key> <step> <last seq>
//	done <instance> <pointer> <attempt> <nonce>
//
// The last seq is the instance's committed audit seq when the call
// began: a step whose step_completed row has a seq at or below it had
// been completed before the call. The nonce is in the step's output, so
// the stored output can be traced to the call that made it.
type crashWorker struct {
	e     *engine.Engine
	calls *os.File
}

func (w *crashWorker) handle(ctx context.Context, t engine.Task) (any, error) {
	inst, err := w.e.Instance(ctx, t.InstanceID)
	if err != nil {
		return nil, err
	}

	_, err = fmt.Fprintf(w.calls, "call %s %d %d %s %s %d\n", t.InstanceID, t.PointerID,
		t.Attempt, t.IdempotencyKey, t.StepID, inst.LastSeq)
	if err != nil {
		return nil, fmt.Errorf("logging call: %w", err)
	}

	if err := sleepCtx(ctx, time.Millisecond+rand.N(12*time.Millisecond)); err != nil {
		return nil, err
	}

	v, err := crashValue(t)
	if err != nil {
		return nil, engine.NonRetryable("bad_input", err.Error())
	}

	nonce := strconv.FormatUint(rand.Uint64(), 36)
	_, err = fmt.Fprintf(w.calls, "done %s %d %d %s\n", t.InstanceID, t.PointerID, t.Attempt, nonce)
	if err != nil {
		return nil, fmt.Errorf("logging call: %w", err)
	}

	return map[string]any{"v": v, "nonce": nonce}, nil
}

// crashValue computes a step's value from its input.
func crashValue(t engine.Task) (int, error) {
	var in struct {
		N, X, I int
		Cs      []struct{ V int }
	}
	if err := json.Unmarshal(t.Input, &in); err != nil {
		return 0, fmt.Errorf("decoding input of %s: %w", t.StepID, err)
	}

	switch t.StepID {
	case "a":
		return in.N + 1, nil
	case "b1":
		return 2 * in.X, nil
	case "b2":
		return in.X + 3, nil
	case "c":
		return 10*in.X + in.I, nil
	case "d":
		if len(in.Cs) != 3 {
			return 0, fmt.Errorf("d got %d foreach results, want 3", len(in.Cs))
		}
		sum := in.X
		for _, c := range in.Cs {
			sum += c.V
		}
		return sum, nil
	}

	return 0, fmt.Errorf("unknown step %q", t.StepID)
}

// crashCall is one "call" line of the call log.
type crashCall struct {
	instance string
	pointer  int64
	attempt  int
	key      string
	step     string
	seenSeq  int64
}

// crashLog is the parsed call log: calls by instance, and the nonces
// of finished calls by idempotency key.
type crashLog struct {
	calls map[string][]crashCall
	done  map[string][]string
	total int
}

func readCrashLog(t *testing.T, path string) crashLog {
	t.Helper()

	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("opening call log: %v", err)
	}
	defer f.Close()

	lg := crashLog{calls: map[string][]crashCall{}, done: map[string][]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 7 && fields[0] == "call":
			c := crashCall{instance: fields[1], key: fields[4], step: fields[5]}
			c.pointer, _ = strconv.ParseInt(fields[2], 10, 64)
			c.attempt, _ = strconv.Atoi(fields[3])
			c.seenSeq, _ = strconv.ParseInt(fields[6], 10, 64)
			lg.calls[c.instance] = append(lg.calls[c.instance], c)
			lg.total++
		case len(fields) == 5 && fields[0] == "done":
			key := fields[1] + "/" + fields[2] + "/" + fields[3]
			lg.done[key] = append(lg.done[key], fields[4])
		default:
			t.Fatalf("call log: malformed line %q", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading call log: %v", err)
	}

	return lg
}

// crashVerify opens the database the children left and checks every
// instance against it and against the call log.
func crashVerify(t *testing.T, dir string) {
	t.Helper()

	lg := readCrashLog(t, filepath.Join(dir, "calls.log"))
	h := newHarnessAt(t, filepath.Join(dir, "weft.db"), crashOptions())
	page, err := h.e.ListInstances(h.ctx,
		store.InstanceFilter{DefinitionName: "crash", PageSize: 1000})
	if err != nil {
		t.Fatalf("listing instances: %v", err)
	}
	if len(page.Instances) != crashInstances {
		t.Fatalf("%d instances, want %d", len(page.Instances), crashInstances)
	}

	keys := map[string]bool{}
	var problems []string
	for _, inst := range page.Instances {
		if keys[inst.StartKey] {
			problems = append(problems, "start key "+inst.StartKey+" started twice")
		}
		keys[inst.StartKey] = true
		problems = append(problems, crashCheckInstance(h, inst, lg)...)
	}

	redelivered := 0
	for _, calls := range lg.calls {
		seen := map[string]bool{}
		for _, c := range calls {
			if seen[c.key] {
				redelivered++
			}
			seen[c.key] = true
		}
	}
	t.Logf("%d handler calls for %d task steps, %d of them redeliveries after a kill",
		lg.total, crashInstances*crashTasks, redelivered)

	for i, p := range problems {
		if i == 20 {
			t.Errorf("... and %d more", len(problems)-i)
			break
		}
		t.Error(p)
	}
}

// crashCheckInstance checks one instance: completed with the right
// value, every task step completed once on its first attempt with an
// output a logged call made, a gap-free audit, and no call of a step
// after its completion was committed.
func crashCheckInstance(h *harness, inst store.Instance, lg crashLog) []string {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, inst.StartKey+" "+inst.ID+": "+fmt.Sprintf(format, args...))
	}

	if inst.Status != store.InstanceCompleted {
		bad("status %s (%s %s), want completed", inst.Status, inst.Reason, inst.Error)
		return problems
	}

	n, _ := strconv.Atoi(strings.TrimPrefix(inst.StartKey, "crash-"))
	var data struct{ D struct{ V int } }
	if err := json.Unmarshal(inst.Data, &data); err != nil || data.D.V != crashWant(n) {
		bad("data.d.v = %d (%v), want %d", data.D.V, err, crashWant(n))
	}

	steps, err := h.e.Steps(h.ctx, inst.ID)
	if err != nil {
		bad("listing steps: %v", err)
		return problems
	}
	evs := h.audit(inst.ID)
	problems = append(problems, crashCheckAudit(inst, evs)...)

	completedAt := map[int64]int64{}
	for _, ev := range evs {
		if ev.Type == "step_completed" {
			completedAt[ev.PointerID] = ev.Seq
		}
	}

	tasks := 0
	for _, s := range steps {
		if s.Service == "" {
			continue
		}
		tasks++
		problems = append(problems, crashCheckTaskStep(inst, s, evs, lg)...)
	}
	if tasks != crashTasks {
		bad("%d task steps, want %d", tasks, crashTasks)
	}

	for _, c := range lg.calls[inst.ID] {
		if want := fmt.Sprintf("%s/%d/%d", c.instance, c.pointer, c.attempt); c.key != want {
			bad("step %s pointer %d: idempotency key %q, want %q", c.step, c.pointer, c.key, want)
		}
		if seq, ok := completedAt[c.pointer]; ok && seq <= c.seenSeq {
			bad("step %s pointer %d completed at seq %d, dispatched again after seq %d",
				c.step, c.pointer, seq, c.seenSeq)
		}
	}

	return problems
}

// crashCheckAudit checks that the audit is numbered 1..LastSeq without
// gaps and ends with the instance's completion.
func crashCheckAudit(inst store.Instance, evs []store.AuditEvent) []string {
	var problems []string
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			problems = append(problems, fmt.Sprintf("%s: audit row %d has seq %d", inst.ID, i, ev.Seq))
			break
		}
	}
	if int64(len(evs)) != inst.LastSeq {
		problems = append(problems,
			fmt.Sprintf("%s: %d audit rows, last seq %d", inst.ID, len(evs), inst.LastSeq))
	}
	if len(evs) == 0 || evs[len(evs)-1].Type != "instance_completed" {
		problems = append(problems, inst.ID+": audit does not end with instance_completed")
	}

	return problems
}

// crashCheckTaskStep checks one task step: completed on attempt 1 (a
// crash is no attempt), dispatched, started and completed once each in
// the audit, its output made by a call logged with its key.
func crashCheckTaskStep(inst store.Instance, s store.Step, evs []store.AuditEvent,
	lg crashLog) []string {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s step %s pointer %d: ", inst.ID, s.StepID, s.ID)+
			fmt.Sprintf(format, args...))
	}

	if s.Status != store.StepCompleted || s.Attempt != 1 {
		bad("status %s attempt %d, want completed on attempt 1", s.Status, s.Attempt)
	}

	counts := map[string]int{}
	for _, ev := range evs {
		if ev.PointerID == s.ID {
			counts[ev.Type]++
		}
	}
	for _, typ := range []string{"step_dispatched", "step_started", "step_completed"} {
		if counts[typ] != 1 {
			bad("%d %s audit rows, want 1", counts[typ], typ)
		}
	}

	var out struct{ Nonce string }
	if err := json.Unmarshal(s.Output, &out); err != nil {
		bad("decoding output %s: %v", s.Output, err)
		return problems
	}
	key := fmt.Sprintf("%s/%d/%d", inst.ID, s.ID, s.Attempt)
	found := false
	for _, nonce := range lg.done[key] {
		found = found || nonce == out.Nonce
	}
	if !found {
		bad("output %s was made by no logged call of %s", s.Output, key)
	}

	return problems
}
