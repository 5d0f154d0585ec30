// Package cli holds the weft command's verbs as testable commands: flag
// parsing over typed functions that take their output streams.
package cli

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs the weft command with args and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "weft: %v\n", err)
		return 1
	}

	return 0
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "weft",
		Short:         "weft runs durable workflows",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	var cf clientFlags
	cf.register(root)
	root.AddCommand(newDemo(stdout, stderr), newServe(stderr),
		newDefinitionCmd(&cf, stdout), newServiceCmd(&cf, stdout),
		newInstanceCmd(&cf, stdout), newStartCmd(&cf, stdout),
		newEventsCmd(&cf, stdout), newPublishCmd(&cf, stdout), newUserTaskCmd(&cf, stdout),
		newTokenCmd(stdout))

	return root
}
