package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

type startFlags struct {
	version  int32
	input    string
	startKey string
	wait     bool
}

func newStartCmd(f *clientFlags, out io.Writer) *cobra.Command {
	var sf startFlags
	cmd := &cobra.Command{
		Use:   "start DEFINITION",
		Short: "Start an instance of a definition",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, out, sf.wait, func(ctx context.Context, c *client) error {
				return c.start(ctx, args[0], sf)
			})
		},
	}
	cmd.Flags().Int32Var(&sf.version, "version", 0, "version to start (default the newest active one)")
	cmd.Flags().StringVar(&sf.input, "input", "", "start input, a JSON object, or @file")
	cmd.Flags().StringVar(&sf.startKey, "start-key", "", "idempotency key: the same key starts once")
	cmd.Flags().BoolVar(&sf.wait, "wait", false, "block until the instance ends and print its result")

	return cmd
}

func (c *client) start(ctx context.Context, def string, sf startFlags) error {
	input, err := readJSONArg("input", sf.input)
	if err != nil {
		return err
	}

	resp, err := c.exec.StartInstance(ctx, &weftv1.StartInstanceRequest{
		Definition: def, Version: sf.version, Input: input, StartKey: sf.startKey,
	})
	if err != nil {
		return err
	}
	if !sf.wait {
		if c.json() {
			return c.printJSON(resp)
		}
		return c.instanceTable([]*weftv1.Instance{resp.GetInstance()})
	}

	return c.waitFor(ctx, resp.GetInstance().GetId())
}

// waitFor follows an instance's watch stream to its end, prints the
// instance, and fails unless it completed.
func (c *client) waitFor(ctx context.Context, id string) error {
	stream, err := c.state.WatchInstance(ctx, &weftv1.WatchInstanceRequest{InstanceId: id})
	if err != nil {
		return fmt.Errorf("waiting for instance %s: %w", id, err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("waiting for instance %s: %w", id, err)
		}
	}

	got, err := c.state.GetInstance(ctx, &weftv1.GetInstanceRequest{InstanceId: id})
	if err != nil {
		return err
	}
	if err := c.showInstance(got); err != nil {
		return err
	}

	inst := got.GetInstance()
	if inst.GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED {
		return fmt.Errorf("instance %s ended %s: %s %s", id, enumWord(inst.GetStatus().String()),
			inst.GetReason(), inst.GetError())
	}

	return nil
}

func newInstanceCmd(f *clientFlags, out io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "instance",
		Aliases: []string{"instances", "inst"},
		Short:   "Read and steer workflow instances",
	}
	cmd.AddCommand(newStartCmd(f, out), newGetCmd(f, out), newListCmd(f, out))

	commands := []struct {
		use, short string
		reason     bool
		run        func(*client, context.Context, string, string) (*weftv1.Instance, error)
	}{
		{"pause", "Stop new steps of an instance from starting", true, (*client).pause},
		{"resume", "Let a paused instance go on", false, (*client).resume},
		{"cancel", "Cancel an instance: drain, clean up, end cancelled", true, (*client).cancel},
		{"terminate", "End an instance at once, without cleanup", true, (*client).terminate},
		{"retry", "Run a failed instance again from its failed step", false, (*client).retry},
	}
	for _, cc := range commands {
		var reason string
		sub := &cobra.Command{
			Use: cc.use + " INSTANCE", Short: cc.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					inst, err := cc.run(c, ctx, args[0], reason)
					if err != nil {
						return err
					}
					return c.showInstance(&weftv1.GetInstanceResponse{Instance: inst})
				})
			},
		}
		if cc.reason {
			sub.Flags().StringVar(&reason, "reason", "", "why, stored with the instance")
		}
		cmd.AddCommand(sub)
	}
	cmd.AddCommand(newSkipCmd(f, out))

	return cmd
}

func (c *client) pause(ctx context.Context, id, reason string) (*weftv1.Instance, error) {
	resp, err := c.exec.PauseInstance(ctx, &weftv1.PauseInstanceRequest{InstanceId: id, Reason: reason})
	return resp.GetInstance(), err
}

func (c *client) resume(ctx context.Context, id, _ string) (*weftv1.Instance, error) {
	resp, err := c.exec.ResumeInstance(ctx, &weftv1.ResumeInstanceRequest{InstanceId: id})
	return resp.GetInstance(), err
}

func (c *client) cancel(ctx context.Context, id, reason string) (*weftv1.Instance, error) {
	resp, err := c.exec.CancelInstance(ctx, &weftv1.CancelInstanceRequest{InstanceId: id, Reason: reason})
	return resp.GetInstance(), err
}

func (c *client) terminate(ctx context.Context, id, reason string) (*weftv1.Instance, error) {
	resp, err := c.exec.TerminateInstance(ctx, &weftv1.TerminateInstanceRequest{InstanceId: id, Reason: reason})
	return resp.GetInstance(), err
}

func (c *client) retry(ctx context.Context, id, _ string) (*weftv1.Instance, error) {
	resp, err := c.exec.RetryInstance(ctx, &weftv1.RetryInstanceRequest{InstanceId: id})
	return resp.GetInstance(), err
}

func newSkipCmd(f *clientFlags, out io.Writer) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: "skip-step INSTANCE STEP", Short: "Complete a failed step with an output and go on",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
				data, err := readJSONArg("output", output)
				if err != nil {
					return err
				}
				resp, err := c.exec.SkipStep(ctx, &weftv1.SkipStepRequest{
					InstanceId: args[0], StepId: args[1], Output: data,
				})
				if err != nil {
					return err
				}
				return c.showInstance(&weftv1.GetInstanceResponse{Instance: resp.GetInstance()})
			})
		},
	}
	cmd.Flags().StringVar(&output, "output", "", "the step's output, JSON, or @file")

	return cmd
}

func newGetCmd(f *clientFlags, out io.Writer) *cobra.Command {
	return &cobra.Command{
		Use: "get INSTANCE", Short: "Show an instance with its steps", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
				resp, err := c.state.GetInstance(ctx, &weftv1.GetInstanceRequest{InstanceId: args[0]})
				if err != nil {
					return err
				}
				return c.showInstance(resp)
			})
		},
	}
}

// showInstance prints an instance, and its steps when it has them.
func (c *client) showInstance(resp *weftv1.GetInstanceResponse) error {
	if c.json() {
		return c.printJSON(resp)
	}

	inst := resp.GetInstance()
	if err := c.instanceTable([]*weftv1.Instance{inst}); err != nil {
		return err
	}
	for _, kv := range [][2]string{
		{"reason", inst.GetReason()}, {"input", inst.GetInput()}, {"data", inst.GetData()},
		{"output", inst.GetOutput()},
		{"error", inst.GetError()},
	} {
		if kv[1] != "" {
			fmt.Fprintf(c.out, "%s: %s\n", kv[0], kv[1])
		}
	}
	if len(resp.GetSteps()) == 0 {
		return nil
	}

	rows := make([][]string, 0, len(resp.GetSteps()))
	for _, st := range resp.GetSteps() {
		rows = append(rows, []string{
			strconv.FormatInt(st.GetPointerId(), 10), st.GetStepId(), enumWord(st.GetStatus().String()),
			strconv.Itoa(int(st.GetAttempt())), strings.Trim(st.GetService()+"."+st.GetAction(), "."),
			clip(st.GetOutput()+st.GetError(), 60),
		})
	}
	fmt.Fprintln(c.out)

	return c.table([]string{"POINTER", "STEP", "STATUS", "ATTEMPT", "TASK", "RESULT"}, rows)
}

func (c *client) instanceTable(insts []*weftv1.Instance) error {
	rows := make([][]string, 0, len(insts))
	for _, i := range insts {
		rows = append(rows, []string{
			i.GetId(), i.GetDefinition() + " v" + strconv.Itoa(int(i.GetVersion())),
			enumWord(i.GetStatus().String()), i.GetCreatedAt().AsTime().Format(time.RFC3339), i.GetStartKey(),
		})
	}

	return c.table([]string{"INSTANCE", "DEFINITION", "STATUS", "CREATED", "START KEY"}, rows)
}

// clip shortens s to n runes for a table cell.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}

	return string(r[:n-1]) + "…"
}

type listFlags struct {
	statuses  []string
	def       string
	version   int32
	startKey  string
	since     string
	before    string
	data      string
	pageSize  int32
	pageToken string
}

func newListCmd(f *clientFlags, out io.Writer) *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use: "list", Short: "List instances, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
				return c.list(ctx, lf)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&lf.statuses, "status", nil, "keep these statuses (running, paused, failed, ...)")
	fl.StringVar(&lf.def, "definition", "", "keep instances of this definition")
	fl.Int32Var(&lf.version, "version", 0, "keep instances of this version (with --definition)")
	fl.StringVar(&lf.startKey, "start-key", "", "keep the instance started with this key")
	fl.StringVar(&lf.since, "since", "", "keep instances started after this RFC 3339 time")
	fl.StringVar(&lf.before, "before", "", "keep instances started before this RFC 3339 time")
	fl.StringVar(&lf.data, "data", "", "keep instances whose data holds PATH=JSON, as order.id=\"42\"")
	fl.Int32Var(&lf.pageSize, "page-size", 0, "instances per page (default 100)")
	fl.StringVar(&lf.pageToken, "page-token", "", "continue from a previous page")

	return cmd
}

func (lf listFlags) request() (*weftv1.ListInstancesRequest, error) {
	req := &weftv1.ListInstancesRequest{
		Definition: lf.def, Version: lf.version, StartKey: lf.startKey,
		PageSize: lf.pageSize, PageToken: lf.pageToken,
	}
	for _, s := range lf.statuses {
		v, ok := weftv1.InstanceStatus_value["INSTANCE_STATUS_"+strings.ToUpper(s)]
		if !ok || v == 0 {
			return nil, fmt.Errorf("--status: unknown status %q", s)
		}
		req.Statuses = append(req.Statuses, weftv1.InstanceStatus(v))
	}

	var err error
	if req.CreatedAfter, err = parseTime("since", lf.since); err != nil {
		return nil, err
	}
	if req.CreatedBefore, err = parseTime("before", lf.before); err != nil {
		return nil, err
	}

	if lf.data != "" {
		path, value, ok := strings.Cut(lf.data, "=")
		if !ok {
			return nil, fmt.Errorf("--data: %q is not PATH=JSON", lf.data)
		}
		req.DataPath, req.DataValue = path, value
	}

	return req, nil
}

// parseTime reads an RFC 3339 flag value; empty gives nil.
func parseTime(flag, v string) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}

	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}

	return timestamppb.New(t), nil
}

func (c *client) list(ctx context.Context, lf listFlags) error {
	req, err := lf.request()
	if err != nil {
		return err
	}

	resp, err := c.state.ListInstances(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}

	if err := c.instanceTable(resp.GetInstances()); err != nil {
		return err
	}
	if resp.GetNextPageToken() != "" {
		fmt.Fprintf(c.out, "\nmore: --page-token %s\n", resp.GetNextPageToken())
	}

	return nil
}
