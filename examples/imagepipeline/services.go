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

// HandleService adds the actions of service to w: read for exif, detect
// for faces, make for thumbs and summarize for summary.
func HandleService(w *worker.Worker, service string) error {
	var action string
	var h engine.HandlerFunc
	switch service {
	case "exif":
		action, h = "read", Handler(exif.Read)
	case "faces":
		action, h = "detect", Handler(faces.Detect)
	case "thumbs":
		action, h = "make", Handler(thumbs.Make)
	case "summary":
		action, h = "summarize", Handler(summary.Summarize)
	default:
		return fmt.Errorf("service %q is not one of %v", service, Services)
	}

	w.Handle(action, func(ctx context.Context, t worker.Task) (any, error) {
		return h(ctx, engine.Task{
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
