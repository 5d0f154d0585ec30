package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxAliasValues bounds the values reached through YAML aliases, so that
// a small source cannot expand into a huge one ("billion laughs").
const maxAliasValues = 100_000

// yamlFloatText matches a plain YAML 1.2 float written with digits.
var yamlFloatText = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// jsonNumber matches the number grammar of JSON.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// yamlReader turns a YAML document into the plain values readJSON makes:
// numbers keep their literal digits as json.Number, aliases are expanded,
// and what JSON cannot hold (merge keys, .inf, custom tags, non-string
// keys) is refused.
type yamlReader struct {
	fs      *faults
	active  map[*yaml.Node]bool
	aliased int
}

// readYAML reads src as one YAML document, recording faults in fs.
func readYAML(src []byte, fs *faults) any {
	dec := yaml.NewDecoder(bytes.NewReader(src))

	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		fs.add("", "the definition is empty")
		return nil
	}
	if err != nil {
		fs.add("", "%s", err.Error())
		return nil
	}

	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || !emptyDocument(&more) {
			fs.add("", "the source holds more than one YAML document")
			return nil
		}
	}

	r := &yamlReader{fs: fs, active: map[*yaml.Node]bool{}}
	return r.value(&doc, "", 0)
}

// emptyDocument reports whether a document holds nothing, as after a
// trailing "---".
func emptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}

	n := doc.Content[0]
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == ""
}

// value converts node n; path names it in faults.
func (r *yamlReader) value(n *yaml.Node, path string, depth int) any {
	if depth > maxValueDepth {
		r.fs.add(path, "nested deeper than %d levels", maxValueDepth)
		return nil
	}
	if len(r.active) > 0 {
		r.aliased++
		if r.aliased == maxAliasValues {
			r.fs.add(path, "aliases expand to more than %d values", maxAliasValues)
		}
		if r.aliased >= maxAliasValues {
			return nil
		}
	}

	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return r.value(n.Content[0], path, depth)
	case yaml.AliasNode:
		return r.alias(n, path, depth)
	case yaml.MappingNode:
		return r.mapping(n, path, depth)
	case yaml.SequenceNode:
		return r.sequence(n, path, depth)
	case yaml.ScalarNode:
		return r.scalar(n, path)
	}

	r.fs.add(path, "unsupported YAML node")
	return nil
}

// alias converts the node an alias refers to.
func (r *yamlReader) alias(n *yaml.Node, path string, depth int) any {
	if n.Alias == nil || r.active[n.Alias] {
		r.fs.add(path, "alias *%s refers to itself", n.Value)
		return nil
	}

	r.active[n.Alias] = true
	v := r.value(n.Alias, path, depth+1)
	delete(r.active, n.Alias)

	return v
}

// mapping converts a mapping, refusing duplicate and non-string keys.
func (r *yamlReader) mapping(n *yaml.Node, path string, depth int) any {
	obj := make(map[string]any, len(n.Content)/2)
	lines := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		key, ok := r.key(k, path)
		if !ok {
			continue
		}
		at := fieldPath(path, key)
		if first, dup := lines[key]; dup {
			r.fs.add(at, "duplicate key (first at line %d)", first)
			continue
		}
		lines[key] = k.Line
		obj[key] = r.value(n.Content[i+1], at, depth+1)
	}

	return obj
}

// key reads a mapping key: a string, or a number or boolean taken as its
// text.
func (r *yamlReader) key(k *yaml.Node, path string) (string, bool) {
	if k.Kind == yaml.ScalarNode {
		switch k.ShortTag() {
		case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
			return k.Value, true
		case "!!merge":
			r.fs.add(path, "merge keys (<<) are not supported")
			return "", false
		}
	}

	r.fs.add(path, "a key at line %d is not a string", k.Line)
	return "", false
}

// sequence converts a sequence.
func (r *yamlReader) sequence(n *yaml.Node, path string, depth int) any {
	arr := make([]any, len(n.Content))
	for i, c := range n.Content {
		arr[i] = r.value(c, indexPath(path, i), depth+1)
	}

	return arr
}

// scalar converts a scalar by its resolved tag.
func (r *yamlReader) scalar(n *yaml.Node, path string) any {
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			r.fs.add(path, "%q is not a boolean", n.Value)
		}
		return b
	case "!!int":
		num, ok := yamlInt(n.Value)
		if !ok {
			r.fs.add(path, "%q is not an integer", n.Value)
		}
		return num
	case "!!float":
		num, ok := yamlFloat(n.Value)
		if !ok {
			r.fs.add(path, "%q is not a JSON number", n.Value)
		}
		return num
	case "!!str":
		if n.Style == 0 && yamlFloatText.MatchString(n.Value) {
			// A plain number too large for a float64 (1e400) resolves to
			// a string in the YAML library; YAML 1.2 makes it a number.
			return r.scalar(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: n.Value}, path)
		}
		return n.Value
	case "!!timestamp", "!!binary":
		return n.Value
	default:
		r.fs.add(path, "unsupported tag %q", tag)
		return nil
	}
}

// yamlInt renders a YAML integer (0x10, 0o17, 0b101, 017, +5, 1_000) as
// the decimal text of the same value.
func yamlInt(text string) (json.Number, bool) {
	plain := strings.ReplaceAll(text, "_", "")
	if jsonNumber.MatchString(plain) && !strings.ContainsAny(plain, ".eE") {
		return json.Number(plain), true
	}

	var i big.Int
	if _, ok := i.SetString(plain, 0); !ok {
		return "", false
	}

	return json.Number(i.String()), true
}

// yamlFloat renders a YAML float (.5, +1.5, 1., 1_000.5) as JSON number
// text with the same digits; infinities and NaN have none.
func yamlFloat(text string) (json.Number, bool) {
	s := strings.ReplaceAll(text, "_", "")
	if !yamlFloatText.MatchString(s) {
		return "", false
	}

	s = strings.TrimPrefix(s, "+")
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}

	mant, exp := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, exp = s[:i], s[i:]
	}
	whole, frac, dotted := strings.Cut(mant, ".")
	whole = strings.TrimLeft(whole, "0")
	if whole == "" {
		whole = "0"
	}
	if dotted && frac == "" {
		dotted = false
	}

	out := sign + whole
	if dotted {
		out += "." + frac
	}
	out += exp
	if !jsonNumber.MatchString(out) {
		return "", false
	}

	return json.Number(out), true
}
