package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

func newDefinitionCmd(f *clientFlags, out io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "definition",
		Aliases: []string{"definitions", "def"},
		Short:   "Register, validate, read, deprecate and delete workflow definitions",
	}
	cmd.AddCommand(
		&cobra.Command{
			Use: "register FILE...", Short: "Register definitions from YAML or JSON files",
			Args: cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.register(ctx, args)
				})
			},
		},
		&cobra.Command{
			Use: "validate FILE", Short: "Check a definition without registering it",
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.validate(ctx, args[0])
				})
			},
		},
		&cobra.Command{
			Use: "get NAME [VERSION]", Short: "Show a definition version with its source (default newest)",
			Args: cobra.RangeArgs(1, 2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.getDefinition(ctx, args)
				})
			},
		},
		&cobra.Command{
			Use: "list [NAME]", Short: "List definitions and their versions",
			Args: cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.listDefinitions(ctx, strings.Join(args, ""))
				})
			},
		},
		&cobra.Command{
			Use: "deprecate NAME VERSION", Short: "Stop new starts of a version",
			Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.deprecate(ctx, args)
				})
			},
		},
		&cobra.Command{
			Use: "delete NAME VERSION", Short: "Delete a version no live instance uses",
			Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.deleteDefinition(ctx, args)
				})
			},
		},
	)

	return cmd
}

// parseVersion reads a VERSION argument.
func parseVersion(s string) (int32, error) {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("VERSION: %q is not a version number (1 or more)", s)
	}

	return int32(v), nil
}

func (c *client) register(ctx context.Context, files []string) error {
	var defs []*weftv1.Definition
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("reading definition: %w", err)
		}
		resp, err := c.defs.RegisterDefinition(ctx, &weftv1.RegisterDefinitionRequest{Source: string(src)})
		if err != nil {
			return fmt.Errorf("registering %s: %w", file, statusError(err))
		}
		defs = append(defs, resp.GetDefinition())
	}

	if c.json() {
		return c.printJSON(&weftv1.ListDefinitionsResponse{Definitions: defs})
	}

	return c.definitionTable(defs)
}

func (c *client) validate(ctx context.Context, file string) error {
	src, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading definition: %w", err)
	}

	resp, err := c.defs.ValidateDefinition(ctx, &weftv1.ValidateDefinitionRequest{Source: string(src)})
	if err != nil {
		return err
	}
	if c.json() {
		if err := c.printJSON(resp); err != nil {
			return err
		}
	} else if resp.GetValid() {
		fmt.Fprintf(c.out, "%s: valid, %s v%d\n", file, resp.GetName(), resp.GetVersion())
	} else {
		for _, fault := range resp.GetFaults() {
			fmt.Fprintf(c.out, "%s: %s: %s\n", file, fault.GetPath(), fault.GetMessage())
		}
	}

	if !resp.GetValid() {
		return fmt.Errorf("%s: %d faults", file, len(resp.GetFaults()))
	}

	return nil
}

func (c *client) getDefinition(ctx context.Context, args []string) error {
	req := &weftv1.GetDefinitionRequest{Name: args[0]}
	if len(args) == 2 {
		v, err := parseVersion(args[1])
		if err != nil {
			return err
		}
		req.Version = v
	}

	resp, err := c.defs.GetDefinition(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}

	if err := c.definitionTable([]*weftv1.Definition{resp.GetDefinition()}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.out, "\n%s\n", resp.GetDefinition().GetSource())

	return err
}

func (c *client) listDefinitions(ctx context.Context, name string) error {
	resp, err := c.defs.ListDefinitions(ctx, &weftv1.ListDefinitionsRequest{Name: name})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}

	return c.definitionTable(resp.GetDefinitions())
}

func (c *client) deprecate(ctx context.Context, args []string) error {
	v, err := parseVersion(args[1])
	if err != nil {
		return err
	}

	resp, err := c.defs.DeprecateDefinition(ctx, &weftv1.DeprecateDefinitionRequest{Name: args[0], Version: v})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}

	return c.definitionTable([]*weftv1.Definition{resp.GetDefinition()})
}

func (c *client) deleteDefinition(ctx context.Context, args []string) error {
	v, err := parseVersion(args[1])
	if err != nil {
		return err
	}

	resp, err := c.defs.DeleteDefinition(ctx, &weftv1.DeleteDefinitionRequest{Name: args[0], Version: v})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	_, err = fmt.Fprintf(c.out, "deleted %s v%d\n", args[0], v)

	return err
}

func (c *client) definitionTable(defs []*weftv1.Definition) error {
	rows := make([][]string, 0, len(defs))
	for _, d := range defs {
		rows = append(rows, []string{
			d.GetName(), strconv.Itoa(int(d.GetVersion())), enumWord(d.GetStatus().String()),
			d.GetCreatedAt().AsTime().Format(time.RFC3339), d.GetDescription(),
		})
	}

	return c.table([]string{"NAME", "VERSION", "STATUS", "CREATED", "DESCRIPTION"}, rows)
}

// enumWord turns DEFINITION_STATUS_ACTIVE into active.
func enumWord(s string) string {
	prefixes := []string{"DEFINITION_STATUS_", "INSTANCE_STATUS_", "STEP_STATUS_", "REPORT_OUTCOME_",
		"SERVICE_MODE_"}
	for _, prefix := range prefixes {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			return strings.ToLower(rest)
		}
	}

	return strings.ToLower(s)
}
