package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/examples/quickstart"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/storeurl"
)

type demoFlags struct {
	db  string
	dir string
}

func newDemo(stdout, stderr io.Writer) *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the file inventory workflow on an embedded SQLite database (or PostgreSQL)",
		Long: "demo registers the inventory workflow, runs one instance of it over a folder " +
			"with Go handlers on an embedded SQLite file (or the database --db names), " +
			"and prints the result.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd, f, stdout, stderr)
		},
	}
	cmd.Flags().StringVar(&f.db, "db", "weft-demo.db",
		"database: an SQLite file path, or a sqlite://, file: or postgres:// URL")
	cmd.Flags().StringVar(&f.dir, "dir", "examples/quickstart", "folder whose files the workflow measures")

	return cmd
}

func runDemo(cmd *cobra.Command, f demoFlags, stdout, stderr io.Writer) error {
	ctx := cmd.Context()
	if _, err := os.Stat(f.dir); err != nil {
		return fmt.Errorf("reading --dir: %w", err)
	}

	st, err := storeurl.Open(ctx, f.db, storeurl.Options{})
	if err != nil {
		return fmt.Errorf("opening %s: %w", f.db, err)
	}
	defer st.Close()

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := engine.New(st, engine.Options{Logger: logger, PollInterval: 200 * time.Millisecond})
	quickstart.Register(e)
	if err := e.Start(ctx); err != nil {
		return err
	}
	defer e.Stop()

	if _, err := e.RegisterDefinition(ctx, quickstart.Definition); err != nil {
		return fmt.Errorf("registering the inventory workflow: %w", err)
	}

	input, _ := json.Marshal(map[string]string{"dir": f.dir})
	began := time.Now()
	inst, _, err := e.StartInstance(ctx, engine.StartParams{Definition: "inventory", Input: input})
	if err != nil {
		return fmt.Errorf("starting the inventory workflow: %w", err)
	}
	fmt.Fprintf(stdout, "started instance %s of inventory v1 on %s\n", inst.ID, f.db)

	inst, err = e.Wait(ctx, inst.ID)
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", inst.ID, err)
	}

	return printDemo(stdout, e, cmd, inst, time.Since(began))
}

func printDemo(w io.Writer, e *engine.Engine, cmd *cobra.Command, inst store.Instance, took time.Duration) error {
	if inst.Status != store.InstanceCompleted {
		return fmt.Errorf("instance %s ended %s: %s %s", inst.ID, inst.Status, inst.Reason, inst.Error)
	}

	var out struct {
		Files   []quickstart.Result `json:"files"`
		Summary map[string]int      `json:"summary"`
	}
	if err := json.Unmarshal(inst.Output, &out); err != nil {
		return fmt.Errorf("reading the result: %w", err)
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tBYTES\tLINES\tSHA-256")
	for _, r := range out.Files {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", filepath.ToSlash(r.Path), r.Bytes, r.Lines, r.SHA256[:16])
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	steps, err := e.Steps(cmd.Context(), inst.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s: %d files, %d bytes, %d lines; %d steps in %s\n",
		inst.Status, out.Summary["files"], out.Summary["bytes"], out.Summary["lines"],
		len(steps), took.Round(time.Millisecond))

	return nil
}
