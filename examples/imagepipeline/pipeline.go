// Package imagepipeline runs the image pipeline's steps in one process:
// exif and faces on a photo, then its thumbnail with the face boxes drawn.
// The steps themselves live in the exif, faces, thumbs and summary
// packages, each a function from a JSON-able input to a JSON-able result,
// so that a weft task handler can call them directly; Process chains them
// the way the pipeline's workflow does for each photo.
package imagepipeline

import (
	"context"
	"fmt"

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
