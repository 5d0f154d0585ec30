package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

func newUserTaskCmd(f *clientFlags, out io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usertask",
		Short: "List and answer user tasks",
	}

	var filter weftv1.ListUserTasksRequest
	list := &cobra.Command{
		Use: "list", Short: "List the open user tasks, oldest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
				resp, err := c.tasks.ListUserTasks(ctx, &filter)
				if err != nil {
					return err
				}
				if c.json() {
					return c.printJSON(resp)
				}
				return c.userTaskTable(resp)
			})
		},
	}
	list.Flags().StringVar(&filter.Assignee, "assignee", "", "only the tasks of this assignee")
	list.Flags().StringVar(&filter.InstanceId, "instance", "", "only the tasks of this instance")
	list.Flags().Int32Var(&filter.PageSize, "page-size", 0, "at most this many tasks (default 100)")
	list.Flags().StringVar(&filter.PageToken, "page-token", "", "continue a previous listing")

	complete := &cobra.Command{
		Use:   "complete INSTANCE STEP OPTION",
		Short: "Answer an open user task with one of its options, as yourself",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
				resp, err := c.tasks.CompleteUserTask(ctx, &weftv1.CompleteUserTaskRequest{
					InstanceId: args[0], Step: args[1], Option: args[2],
				})
				if err != nil {
					return err
				}
				if c.json() {
					return c.printJSON(resp)
				}
				_, err = fmt.Fprintf(c.out, "answered %s of %s: %s\n", args[1], args[0], args[2])
				return err
			})
		},
	}
	cmd.AddCommand(list, complete)

	return cmd
}

// userTaskTable prints open user tasks, and the token of the next page.
func (c *client) userTaskTable(resp *weftv1.ListUserTasksResponse) error {
	rows := make([][]string, 0, len(resp.GetTasks()))
	for _, t := range resp.GetTasks() {
		rows = append(rows, []string{
			t.GetInstanceId(), t.GetStepId(), strconv.FormatInt(t.GetPointerId(), 10),
			t.GetAssignee(), strings.Join(t.GetOptions(), ","), t.GetPrompt(),
			t.GetCreatedAt().AsTime().Format(time.RFC3339),
		})
	}
	err := c.table([]string{"INSTANCE", "STEP", "POINTER", "ASSIGNEE", "OPTIONS", "PROMPT",
		"CREATED"}, rows)
	if err != nil || resp.GetNextPageToken() == "" {
		return err
	}

	_, err = fmt.Fprintf(c.out, "next page: --page-token %s\n", resp.GetNextPageToken())
	return err
}
