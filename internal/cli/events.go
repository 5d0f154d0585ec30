package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

func newEventsCmd(f *clientFlags, out io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List or follow an instance's audit events",
	}

	var after int64
	var limit int32
	list := &cobra.Command{
		Use: "list INSTANCE", Short: "List an instance's audit events", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
				resp, err := c.state.ListAuditEvents(ctx, &weftv1.ListAuditEventsRequest{
					InstanceId: args[0], AfterSeq: after, Limit: limit,
				})
				if err != nil {
					return err
				}
				if c.json() {
					return c.printJSON(resp)
				}
				return c.eventTable(resp.GetEvents())
			})
		},
	}
	list.Flags().Int64Var(&after, "after", 0, "list the events after this seq")
	list.Flags().Int32Var(&limit, "limit", 0, "at most this many events (default 1000)")

	var followAfter int64
	follow := &cobra.Command{
		Use:   "follow INSTANCE",
		Short: "Print an instance's audit events as they happen, until it ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, out, true, func(ctx context.Context, c *client) error {
				return c.follow(ctx, args[0], followAfter)
			})
		},
	}
	follow.Flags().Int64Var(&followAfter, "after", 0, "start after this seq")
	cmd.AddCommand(list, follow)

	return cmd
}

func (c *client) follow(ctx context.Context, id string, after int64) error {
	stream, err := c.state.WatchInstance(ctx, &weftv1.WatchInstanceRequest{InstanceId: id, AfterSeq: after})
	if err != nil {
		return err
	}

	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}

		if c.json() {
			if err := c.printJSON(resp.GetEvent()); err != nil {
				return err
			}
			continue
		}
		ev := resp.GetEvent()
		fmt.Fprintln(c.out, eventRow(ev)...)
	}
}

func eventRow(ev *weftv1.AuditEvent) []any {
	return []any{
		strconv.FormatInt(ev.GetSeq(), 10), ev.GetAt().AsTime().Format(time.RFC3339Nano), ev.GetType(),
		ev.GetStepId(), ev.GetData(),
	}
}

func (c *client) eventTable(evs []*weftv1.AuditEvent) error {
	rows := make([][]string, 0, len(evs))
	for _, ev := range evs {
		attempt := ""
		if ev.GetAttempt() > 0 {
			attempt = strconv.Itoa(int(ev.GetAttempt()))
		}
		rows = append(rows, []string{
			strconv.FormatInt(ev.GetSeq(), 10), ev.GetAt().AsTime().Format(time.RFC3339Nano), ev.GetType(),
			ev.GetStepId(), attempt, clip(ev.GetData(), 60),
		})
	}

	return c.table([]string{"SEQ", "AT", "TYPE", "STEP", "ATTEMPT", "DATA"}, rows)
}

type publishFlags struct {
	key      string
	data     string
	instance string
	at       string
}

func newPublishCmd(f *clientFlags, out io.Writer) *cobra.Command {
	var pf publishFlags
	cmd := &cobra.Command{
		Use: "publish NAME", Short: "Publish an event for the waits that match it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
				return c.publish(ctx, args[0], pf)
			})
		},
	}
	cmd.Flags().StringVar(&pf.key, "key", "", "the event's key, matched against each wait's")
	cmd.Flags().StringVar(&pf.data, "data", "", "the event's data, JSON, or @file")
	cmd.Flags().StringVar(&pf.instance, "instance", "", "deliver only to this instance")
	cmd.Flags().StringVar(&pf.at, "at", "", "RFC 3339 time the event becomes visible (default now)")

	return cmd
}

func (c *client) publish(ctx context.Context, name string, pf publishFlags) error {
	data, err := readJSONArg("data", pf.data)
	if err != nil {
		return err
	}
	at, err := parseTime("at", pf.at)
	if err != nil {
		return err
	}

	resp, err := c.exec.PublishEvent(ctx, &weftv1.PublishEventRequest{
		Name: name, Key: pf.key, Data: data, InstanceId: pf.instance, Time: at,
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	_, err = fmt.Fprintf(c.out, "published event %d\n", resp.GetEventId())

	return err
}
