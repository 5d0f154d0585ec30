// Package summary is the last step of the image pipeline: it gathers the
// results of the exif, faces and thumbs steps for each photo into one
// table row per photo.
package summary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"text/tabwriter"

	"github.com/weftworks/weft/examples/imagepipeline/exif"
	"github.com/weftworks/weft/examples/imagepipeline/faces"
	"github.com/weftworks/weft/examples/imagepipeline/thumbs"
)

// ErrInput reports a photo result without its photo's path.
var ErrInput = errors.New("invalid input")

// Photo holds the results of the three steps for one photo.
type Photo struct {
	// Path is the photo's file.
	Path  string        `json:"path"`
	EXIF  exif.Result   `json:"exif"`
	Faces faces.Result  `json:"faces"`
	Thumb thumbs.Result `json:"thumb"`
}

// Input is what the summary step reads.
type Input struct {
	Photos []Photo `json:"photos"`
}

// Row is one photo's line of the table. Fields the photo has no value for
// are empty.
type Row struct {
	Photo     string `json:"photo"`
	Camera    string `json:"camera"`
	Taken     string `json:"taken"`
	GPS       string `json:"gps"`
	Faces     int    `json:"faces"`
	Thumbnail string `json:"thumbnail"`
}

// Table is what the summary step returns: a row per photo, ordered by
// photo name, and the totals.
type Table struct {
	Rows    []Row `json:"rows"`
	Photos  int   `json:"photos"`
	Faces   int   `json:"faces"`
	WithGPS int   `json:"with_gps"`
}

// RowOf returns the table row of one photo's results.
func RowOf(p Photo) Row {
	row := Row{
		Photo:     filepath.Base(p.Path),
		Camera:    p.EXIF.Camera,
		Taken:     p.EXIF.Taken,
		Faces:     p.Faces.Count,
		Thumbnail: p.Thumb.Path,
	}
	if g := p.EXIF.GPS; g != nil {
		row.GPS = strconv.FormatFloat(g.Lat, 'f', 5, 64) + "," + strconv.FormatFloat(g.Lon, 'f', 5, 64)
	}
	return row
}

// Summarize builds the table of every photo of in.
func Summarize(_ context.Context, in Input) (Table, error) {
	t := Table{Rows: []Row{}}
	for i, p := range in.Photos {
		if p.Path == "" {
			return Table{}, fmt.Errorf("photos[%d].path: %w: required", i, ErrInput)
		}

		row := RowOf(p)
		t.Rows = append(t.Rows, row)
		t.Faces += row.Faces
		if row.GPS != "" {
			t.WithGPS++
		}
	}

	sort.SliceStable(t.Rows, func(i, j int) bool { return t.Rows[i].Photo < t.Rows[j].Photo })
	t.Photos = len(t.Rows)
	return t, nil
}

// Write prints the table as aligned columns with a header line and a
// closing line of totals; an empty field prints as "-".
func (t Table) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHOTO\tCAMERA\tTAKEN\tGPS\tFACES\tTHUMBNAIL")

	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range t.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n",
			r.Photo, dash(r.Camera), dash(r.Taken), dash(r.GPS), r.Faces, dash(r.Thumbnail))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}

	_, err := fmt.Fprintf(w, "\n%d photos, %d faces, %d with GPS\n", t.Photos, t.Faces, t.WithGPS)
	return err
}
