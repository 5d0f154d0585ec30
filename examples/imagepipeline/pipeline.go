// Package imagepipeline runs the image pipeline's steps in one process:
// exif and faces on a photo, then its thumbnail with the face boxes drawn.
// The steps themselves live in the exif, faces, thumbs and summary
// packages, each a function from a JSON-able input to a JSON-able result,
// so that a weft task handler can call them directly. Register adds them
// to an engine as Go handlers for the workflow in pipeline.yaml
// (Definition); Process chains them in one process the way that workflow
// does for each photo.
package imagepipeline

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/weftworks/weft/engine"

	"github.com/weftworks/weft/examples/imagepipeline/exif"
	"github.com/weftworks/weft/examples/imagepipeline/faces"
	"github.com/weftworks/weft/examples/imagepipeline/summary"
	"github.com/weftworks/weft/examples/imagepipeline/thumbs"
)

// Input names one photo and the folder its thumbnail goes to.
type Input struct {
	Path   string `json:"path"`
	OutDir string `json:"out_dir"`
}

// Process reads the EXIF of the photo, finds its faces and makes its
// thumbnail with the faces drawn.
func Process(ctx context.Context, in Input) (summary.Photo, error) {
	meta, err := exif.Read(ctx, exif.Input{Path: in.Path})
	if err != nil {
		return summary.Photo{}, fmt.Errorf("exif step: %w", err)
	}

	found, err := faces.Detect(ctx, faces.Input{Path: in.Path})
	if err != nil {
		return summary.Photo{}, fmt.Errorf("faces step: %w", err)
	}

	thumb, err := thumbs.Make(ctx, thumbs.Input{Path: in.Path, OutDir: in.OutDir, Boxes: found.Boxes})
	if err != nil {
		return summary.Photo{}, fmt.Errorf("thumbs step: %w", err)
	}
	return summary.Photo{Path: in.Path, EXIF: meta, Faces: found, Thumb: thumb}, nil
}

// Definition is the image pipeline's workflow in YAML.
//
//go:embed pipeline.yaml
var Definition []byte

// Register adds the four steps to e as Go handlers: exif/read,
// faces/detect, thumbs/make and summary/summarize.
func Register(e *engine.Engine) {
	for _, service := range Services {
		e.Handle(service, actions[service].name, actions[service].handler)
	}
}

// inputErrors are the errors that retrying cannot cure.
var inputErrors = []error{exif.ErrInput, faces.ErrInput, thumbs.ErrInput, summary.ErrInput}

// Handler turns a step function into a task handler: the task's input is
// decoded into In and the function's result is the task's result. Input
// that does not decode, or that the step refuses, fails the task without
// a retry; any other error is retried.
func Handler[In, Out any](step func(context.Context, In) (Out, error)) engine.HandlerFunc {
	return func(ctx context.Context, t engine.Task) (any, error) {
		var in In
		if err := json.Unmarshal(t.Input, &in); err != nil {
			return nil, engine.NonRetryable("bad_input", err.Error())
		}

		out, err := step(ctx, in)
		for _, target := range inputErrors {
			if errors.Is(err, target) {
				return nil, engine.NonRetryable("bad_input", err.Error())
			}
		}
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}
