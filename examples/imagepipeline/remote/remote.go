// Package remote runs the image pipeline across processes: a `weft serve`
// process on embedded SQLite and one imageservice process per service,
// all on loopback. Run registers pipeline.yaml, starts it over a list of
// photos, reports progress while it runs and returns the summary table.
package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"

	"github.com/weftworks/weft/examples/imagepipeline"
	"github.com/weftworks/weft/examples/imagepipeline/summary"
)

// ErrRun is wrapped by Run when the instance ends other than completed.
var ErrRun = errors.New("the pipeline did not complete")

// Config says which binaries to run and on what.
type Config struct {
	// Weft is the path of the weft binary.
	Weft string
	// ImageService is the path of the imageservice binary.
	ImageService string
	// Dir holds the database; the caller removes it.
	Dir string
	// Photos are the photos' paths; OutDir receives the thumbnails.
	Photos []string
	OutDir string
	// Late delays the start of the named services.
	Late map[string]time.Duration
	// Push names services that run in push mode: weft calls them at an
	// address of their own instead of their polling it.
	Push map[string]bool
	// WeftLate, when set, starts the services first on a free port and
	// weft that long after them: their polls fail until weft serves.
	WeftLate time.Duration
	// Progress receives a line each time the steps' progress changes;
	// nil for none.
	Progress io.Writer
	// Logs receives the processes' log lines; nil for none.
	Logs io.Writer
}

// Result is what a run gives back.
type Result struct {
	// InstanceID is the instance of the pipeline.
	InstanceID string
	// Table is the summary step's table.
	Table summary.Table
	// Steps are the instance's steps at its end.
	Steps []*weftv1.Step
	// Seen are the progress lines reported, in order.
	Seen []string
}

// Run starts weft and the services, runs the pipeline and stops them.
func Run(ctx context.Context, cfg Config) (Result, error) {
	logs := &lineWriter{w: cfg.Logs}
	listen := "127.0.0.1:0"
	if cfg.WeftLate > 0 {
		addr, err := freeAddr()
		if err != nil {
			return Result{}, err
		}
		listen = addr
	}

	pushAddrs := map[string]string{}
	for name := range cfg.Push {
		addr, err := freeAddr()
		if err != nil {
			return Result{}, err
		}
		pushAddrs[name] = addr
	}

	late, cancel := context.WithCancel(ctx)
	var procs sync.WaitGroup
	svcs := &procList{}
	defer func() { cancel(); svcs.stopAll(); procs.Wait() }()
	startServices := func(addr string) {
		for _, name := range imagepipeline.Services {
			procs.Go(func() {
				if sleep(late, cfg.Late[name]) {
					svcs.start(cfg, name, addr, pushAddrs[name], logs)
				}
			})
		}
	}
	if cfg.WeftLate > 0 {
		startServices(listen)
		if !sleep(ctx, cfg.WeftLate) {
			return Result{}, ctx.Err()
		}
	}

	weft, addr, err := startWeft(ctx, cfg, listen, logs)
	if err != nil {
		return Result{}, err
	}
	defer weft.stop()
	if cfg.WeftLate == 0 {
		startServices(addr)
	}

	return runPipeline(ctx, cfg, addr, pushAddrs)
}

func runPipeline(ctx context.Context, cfg Config, addr string, pushAddrs map[string]string) (Result, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return Result{}, fmt.Errorf("dialling weft: %w", err)
	}
	defer conn.Close()

	id, err := startPipeline(ctx, conn, cfg, pushAddrs)
	if err != nil {
		return Result{}, err
	}

	return follow(ctx, weftv1.NewWorkflowStateServiceClient(conn), id, cfg.Progress)
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer lis.Close()

	return lis.Addr().String(), nil
}

// registerServices registers the pipeline's services: in pull mode the
// imageservice processes poll weft for their tasks, in push mode weft
// calls them at their address. A definition may name only registered
// services.
func registerServices(ctx context.Context, conn *grpc.ClientConn, push map[string]string) error {
	registry := weftv1.NewServiceRegistryServiceClient(conn)
	for _, name := range imagepipeline.Services {
		svc := &weftv1.Service{Name: name, Mode: weftv1.ServiceMode_SERVICE_MODE_PULL}
		if addr, ok := push[name]; ok {
			svc.Mode, svc.Addresses = weftv1.ServiceMode_SERVICE_MODE_PUSH, []string{addr}
		}
		_, err := registry.RegisterService(ctx, &weftv1.RegisterServiceRequest{Service: svc})
		if err != nil {
			return fmt.Errorf("registering service %s: %w", name, err)
		}
	}

	return nil
}

func startPipeline(
	ctx context.Context, conn *grpc.ClientConn, cfg Config, pushAddrs map[string]string,
) (string, error) {
	if err := registerServices(ctx, conn, pushAddrs); err != nil {
		return "", err
	}

	defs := weftv1.NewWorkflowDefinitionServiceClient(conn)
	_, err := defs.RegisterDefinition(ctx, &weftv1.RegisterDefinitionRequest{
		Source: string(imagepipeline.Definition),
	})
	if err != nil {
		return "", fmt.Errorf("registering pipeline.yaml: %w", err)
	}

	input, err := json.Marshal(map[string]any{"photos": cfg.Photos, "out_dir": cfg.OutDir})
	if err != nil {
		return "", fmt.Errorf("marshalling the input: %w", err)
	}
	resp, err := weftv1.NewWorkflowExecutionServiceClient(conn).StartInstance(ctx,
		&weftv1.StartInstanceRequest{Definition: "imagepipeline", Input: string(input)})
	if err != nil {
		return "", fmt.Errorf("starting the pipeline: %w", err)
	}

	return resp.GetInstance().GetId(), nil
}

// follow polls the instance until it ends, reporting progress.
func follow(
	ctx context.Context, state weftv1.WorkflowStateServiceClient, id string, progress io.Writer,
) (Result, error) {
	res := Result{InstanceID: id}
	for {
		resp, err := state.GetInstance(ctx, &weftv1.GetInstanceRequest{InstanceId: id})
		if err != nil {
			return res, fmt.Errorf("getting the instance: %w", err)
		}

		if line := progressLine(resp.GetSteps()); len(res.Seen) == 0 || res.Seen[len(res.Seen)-1] != line {
			res.Seen = append(res.Seen, line)
			if progress != nil {
				fmt.Fprintln(progress, line)
			}
		}

		inst := resp.GetInstance()
		switch inst.GetStatus() {
		case weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED:
			res.Steps = resp.GetSteps()
			if err := json.Unmarshal([]byte(inst.GetOutput()), &res.Table); err != nil {
				return res, fmt.Errorf("reading the summary table: %w", err)
			}
			return res, nil
		case weftv1.InstanceStatus_INSTANCE_STATUS_FAILED, weftv1.InstanceStatus_INSTANCE_STATUS_CANCELLED,
			weftv1.InstanceStatus_INSTANCE_STATUS_TERMINATED:
			res.Steps = resp.GetSteps()
			return res, fmt.Errorf("%w: %s: %s", ErrRun, inst.GetStatus(), inst.GetError())
		}

		if !sleep(ctx, 200*time.Millisecond) {
			return res, ctx.Err()
		}
	}
}

// progressLine counts the completed task steps per service.
func progressLine(steps []*weftv1.Step) string {
	done, all := map[string]int{}, map[string]int{}
	for _, s := range steps {
		if s.GetService() == "" {
			continue
		}
		all[s.GetService()]++
		if s.GetStatus() == weftv1.StepStatus_STEP_STATUS_COMPLETED {
			done[s.GetService()]++
		}
	}

	line := "progress:"
	for _, name := range imagepipeline.Services {
		line += fmt.Sprintf("  %s %d/%d", name, done[name], all[name])
	}

	return line
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// proc is a child process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// stop sends SIGTERM and waits for the process, killing it after a minute.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startProc starts a command whose stderr lines go to logs (and to
// lines, when set).
func startProc(name string, args []string, logs *lineWriter, lines func(string)) (*proc, error) {
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout = os.Stderr
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(name), err)
	}

	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			logs.line(filepath.Base(name), sc.Text())
			if lines != nil {
				lines(sc.Text())
			}
		}
		_ = p.cmd.Wait()
	}()

	return p, nil
}

// startWeft starts `weft serve` on listen and returns the address it
// serves on.
func startWeft(ctx context.Context, cfg Config, listen string, logs *lineWriter) (*proc, string, error) {
	addrc := make(chan string, 1)
	p, err := startProc(cfg.Weft, []string{"serve", "--insecure", "--listen", listen,
		"--database", filepath.Join(cfg.Dir, "weft.db"), "--log-format", "json",
		"--poll-interval", "50ms"}, logs, func(line string) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" {
			addrc <- rec.Addr
		}
	})
	if err != nil {
		return nil, "", err
	}

	select {
	case addr := <-addrc:
		return p, addr, nil
	case <-p.done:
		return nil, "", errors.New("weft serve exited before serving")
	case <-ctx.Done():
		p.stop()
		return nil, "", ctx.Err()
	}
}

// procList holds the service processes started so far.
type procList struct {
	mu      sync.Mutex
	procs   []*proc
	stopped bool
}

// start runs the imageservice process of a service, in push mode on
// pushAddr when it is set.
func (l *procList) start(cfg Config, name, addr, pushAddr string, logs *lineWriter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}

	args := []string{"-address", addr, "-insecure", "-service", name}
	if pushAddr != "" {
		args = append(args, "-push-listen", pushAddr)
	}
	p, err := startProc(cfg.ImageService, args, logs, nil)
	if err != nil {
		logs.line("remote", fmt.Sprintf("starting service %s: %v", name, err))
		return
	}
	l.procs = append(l.procs, p)
}

func (l *procList) stopAll() {
	l.mu.Lock()
	l.stopped = true
	procs := l.procs
	l.mu.Unlock()

	for _, p := range procs {
		p.stop()
	}
}

// lineWriter writes log lines of several processes, one at a time.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(from, text string) {
	if l.w == nil {
		return
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s: %s\n", from, text)
}

// PrintTable writes the summary table, a row per photo.
func PrintTable(w io.Writer, t summary.Table) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHOTO\tCAMERA\tDATE\tGPS\tFACES\tTHUMBNAIL")
	for _, r := range t.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n",
			r.Photo, dash(r.Camera), dash(r.Taken), dash(r.GPS), r.Faces, r.Thumbnail)
	}
	fmt.Fprintf(tw, "%d photos, %d faces, %d with GPS\n", t.Photos, t.Faces, t.WithGPS)

	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}

	return s
}
