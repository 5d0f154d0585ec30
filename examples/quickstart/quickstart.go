// Package quickstart is weft's first example: a file inventory workflow
// with a foreach, parallel branches and a join, run by Go handlers.
package quickstart

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/weftworks/weft/engine"
)

// Definition is the inventory workflow in YAML.
//
//go:embed inventory.yaml
var Definition []byte

// Register adds the handlers of the "files" service to e.
func Register(e *engine.Engine) {
	e.Handle("files", "list", list)
	e.Handle("files", "sha256", hashFile)
	e.Handle("files", "count", countFile)
	e.Handle("files", "summarize", summarize)
}

type listInput struct {
	Dir   string `json:"dir"`
	Limit int    `json:"limit"`
}

// list returns the regular files under a folder, sorted, at most Limit.
func list(ctx context.Context, t engine.Task) (any, error) {
	var in listInput
	if err := json.Unmarshal(t.Input, &in); err != nil {
		return nil, engine.NonRetryable("bad_input", err.Error())
	}

	var files []string
	err := filepath.WalkDir(in.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() != "." && d.Name()[0] == '.' {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, engine.NonRetryable("bad_input", err.Error())
	}

	slices.Sort(files)
	if in.Limit > 0 && len(files) > in.Limit {
		files = files[:in.Limit]
	}

	return map[string]any{"files": files}, nil
}

type pathInput struct {
	Path string `json:"path"`
}

func openInput(t engine.Task) (*os.File, error) {
	var in pathInput
	if err := json.Unmarshal(t.Input, &in); err != nil {
		return nil, engine.NonRetryable("bad_input", err.Error())
	}

	f, err := os.Open(in.Path)
	if err != nil {
		return nil, engine.NonRetryable("unreadable", err.Error())
	}

	return f, nil
}

// hashFile returns the SHA-256 of a file in hex.
func hashFile(ctx context.Context, t engine.Task) (any, error) {
	f, err := openInput(t)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("reading file: %w", err)
	}

	return hex.EncodeToString(h.Sum(nil)), nil
}

// countFile returns the bytes and lines of a file.
func countFile(ctx context.Context, t engine.Task) (any, error) {
	f, err := openInput(t)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var bytesRead, lines int
	r := bufio.NewReader(f)
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		bytesRead += n
		lines += bytes.Count(buf[:n], []byte{'\n'})
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading file: %w", err)
		}
	}

	return map[string]int{"bytes": bytesRead, "lines": lines}, nil
}

// Result is one file of the inventory.
type Result struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Bytes  int    `json:"bytes"`
	Lines  int    `json:"lines"`
}

// summarize totals the measured files.
func summarize(ctx context.Context, t engine.Task) (any, error) {
	var in struct {
		Files []Result `json:"files"`
	}
	if err := json.Unmarshal(t.Input, &in); err != nil {
		return nil, engine.NonRetryable("bad_input", err.Error())
	}

	total := map[string]int{"files": len(in.Files)}
	for _, f := range in.Files {
		total["bytes"] += f.Bytes
		total["lines"] += f.Lines
	}

	return total, nil
}
