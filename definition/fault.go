package definition

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Fault is one problem found in a definition, at one place of its source.
type Fault struct {
	// Path names the place, as in "steps[2].branches[1].steps[0].service".
	// It is empty for a fault of the whole source, such as a syntax error.
	Path string
	// Message says what is wrong there.
	Message string
}

// String renders the fault as "path: message".
func (f Fault) String() string {
	if f.Path == "" {
		return f.Message
	}

	return f.Path + ": " + f.Message
}

// ValidationError is the error Parse and Compile return for a definition
// at fault. It lists every fault found, not only the first.
type ValidationError struct {
	// Faults are sorted by path, with indexes compared as numbers.
	Faults []Fault
}

// Error lists the faults one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Faults))
	for i, f := range e.Faults {
		lines[i] = f.String()
	}

	return strings.Join(lines, "\n")
}

// faults collects the faults of one definition.
type faults []Fault

// add records a fault at path.
func (fs *faults) add(path, format string, args ...any) {
	*fs = append(*fs, Fault{Path: path, Message: fmt.Sprintf(format, args...)})
}

// err returns nil when there is no fault, else a *ValidationError.
func (fs faults) err() error {
	if len(fs) == 0 {
		return nil
	}

	sorted := make([]Fault, len(fs))
	copy(sorted, fs)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Path != sorted[j].Path {
			return lessPath(sorted[i].Path, sorted[j].Path)
		}
		return sorted[i].Message < sorted[j].Message
	})

	return &ValidationError{Faults: sorted}
}

// lessPath orders paths as text, except that runs of digits compare as
// numbers, so that "steps[2]" comes before "steps[10]".
func lessPath(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na := strings.TrimLeft(a[:da], "0")
			nb := strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}

	return len(a) < len(b)
}

// digitRun returns the number of ASCII digits that s starts with.
func digitRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}

	return n
}

// plainKey matches a key that a path may name without quotes.
var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// fieldPath names field name inside path.
func fieldPath(path, name string) string {
	if !plainKey.MatchString(name) {
		return path + "[" + strconv.Quote(name) + "]"
	}
	if path == "" {
		return name
	}

	return path + "." + name
}

// indexPath names element i inside path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
