package imagepipeline

import (
	"context"
	"fmt"
	"slices"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/worker"

	"github.com/weftworks/weft/examples/imagepipeline/exif"
	"github.com/weftworks/weft/examples/imagepipeline/faces"
	"github.com/weftworks/weft/examples/imagepipeline/summary"
	"github.com/weftworks/weft/examples/imagepipeline/thumbs"
)

// Services lists the services of the pipeline, in the order its steps
// run.
var Services = []string{"exif", "faces", "thumbs", "summary"}

// actions maps each service to its one action and that action's handler.
var actions = map[string]struct {
	name    string
	handler engine.HandlerFunc
}{
	"exif":    {"read", Handler(exif.Read)},
	"faces":   {"detect", Handler(faces.Detect)},
	"thumbs":  {"make", Handler(thumbs.Make)},
	"summary": {"summarize", Handler(summary.Summarize)},
}

// HandleService adds the action of service to w: read for exif, detect
// for faces, make for thumbs and summarize for summary.
func HandleService(w *worker.Worker, service string) error {
	a, ok := actions[service]
	if !ok {
		return fmt.Errorf("service %q is not one of %v", service, Services)
	}

	w.Handle(a.name, func(ctx context.Context, t worker.Task) (any, error) {
		return a.handler(ctx, engine.Task{
			InstanceID: t.InstanceID, StepID: t.StepID, PointerID: t.PointerID,
			Attempt: t.Attempt, Service: service, Action: t.Action, Input: t.Input,
			IdempotencyKey: t.IdempotencyKey, Deadline: t.Deadline,
		})
	})

	return nil
}

// KnownService says whether service is one of Services.
func KnownService(service string) bool {
	return slices.Contains(Services, service)
}
