package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Env is what an expression sees. The engine fills it for each
// evaluation: input (the start input), data (the instance data), steps
// (step id to {"output": ...} for the steps that completed in scope),
// item and index (the current foreach item), iteration (the current
// while iteration, from 0), and result (in a task's outcome expression,
// the task's output; null elsewhere).
type Env map[string]any

// envTypes are the names every expression may use, with their types.
// The item is typed as any (not nil) so that "item.name" compiles.
var envTypes = types.Map{
	"input":     types.TypeOf(map[string]any{}),
	"data":      types.TypeOf(map[string]any{}),
	"steps":     types.TypeOf(map[string]any{}),
	"item":      types.Any,
	"index":     types.Int,
	"iteration": types.Int,
	"result":    types.Any,
}

// Expr is a compiled expression.
type Expr struct {
	Source string
	prog   *vm.Program
}

// Limits on an expression's source, checked before it is parsed: the
// parser recurses once per nesting level, so an unbounded source could
// exhaust the stack.
const (
	// MaxExprBytes is the longest expression source accepted.
	MaxExprBytes = 8 << 10
	// MaxExprDepth is the deepest nesting of brackets accepted.
	MaxExprDepth = 64
)

// CompileExpr compiles src against the names of Env; it is how every
// expression is checked at registration.
func CompileExpr(src string) (*Expr, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}

	if err := checkExprShape(src); err != nil {
		return nil, err
	}

	prog, err := expr.Compile(quoteStepIDs(src), expr.Env(envTypes))
	if err != nil {
		return nil, fmt.Errorf("compiling %q: %w", src, firstLine(err))
	}

	return &Expr{Source: src, prog: prog}, nil
}

// checkExprShape refuses a source over MaxExprBytes or nested deeper
// than MaxExprDepth, counting brackets outside string literals.
func checkExprShape(src string) error {
	if len(src) > MaxExprBytes {
		return fmt.Errorf("expression of %d bytes is over the limit of %d", len(src), MaxExprBytes)
	}

	depth := 0
	var quote byte
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case quote != 0 && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			depth++
			if depth > MaxExprDepth {
				return fmt.Errorf("expression nests deeper than %d brackets", MaxExprDepth)
			}
		case c == ')' || c == ']' || c == '}':
			depth--
		}
	}

	return nil
}

// quoteStepIDs rewrites steps.<id> as steps["<id>"] where the id holds a
// '-', outside string literals: step ids may hold hyphens, which the
// expression language reads as minus. steps.<id> is an object, so a
// minus right after it could never have meant a subtraction.
func quoteStepIDs(src string) string {
	const prefix = "steps."
	if !strings.Contains(src, prefix) || !strings.Contains(src, "-") {
		return src
	}

	var b strings.Builder
	var quote byte
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case quote != 0:
			if c == '\\' && i+1 < len(src) {
				b.WriteByte(c)
				i++
				c = src[i]
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case strings.HasPrefix(src[i:], prefix) && (i == 0 || !isIdentByte(src[i-1])):
			end := i + len(prefix)
			for end < len(src) && (isIdentByte(src[end]) || src[end] == '-') {
				end++
			}
			id := strings.TrimRight(src[i+len(prefix):end], "-")
			if strings.Contains(id, "-") {
				b.WriteString(`steps[` + strconv.Quote(id) + `]`)
				i += len(prefix) + len(id) - 1
				continue
			}
		}
		b.WriteByte(c)
	}

	return b.String()
}

// isIdentByte reports whether c may be part of an identifier.
func isIdentByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// StepRefs returns the ids of the steps whose outputs the expression
// reads, as steps.<id> or steps["<id>"], sorted and without repeats.
func (e *Expr) StepRefs() []string {
	v := &stepRefs{}
	node := e.prog.Node()
	ast.Walk(&node, v)
	sort.Strings(v.ids)

	return slices.Compact(v.ids)
}

// stepRefs collects the ids under "steps" in a walked tree.
type stepRefs struct {
	ids []string
}

// Visit implements ast.Visitor.
func (v *stepRefs) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok {
		return
	}

	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || id.Value != "steps" {
		return
	}

	if prop, ok := m.Property.(*ast.StringNode); ok {
		v.ids = append(v.ids, prop.Value)
	}
}

// Eval runs the expression over env.
func (e *Expr) Eval(env Env) (any, error) {
	out, err := expr.Run(e.prog, map[string]any(env))
	if err != nil {
		return nil, fmt.Errorf("evaluating %q: %w", e.Source, firstLine(err))
	}

	return out, nil
}

// EvalBool runs the expression and requires a boolean.
func (e *Expr) EvalBool(env Env) (bool, error) {
	out, err := e.Eval(env)
	if err != nil {
		return false, err
	}

	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("evaluating %q: got %T, want bool", e.Source, out)
	}

	return b, nil
}

// EvalString runs the expression and renders a string, number or bool
// result as text; event keys use it.
func (e *Expr) EvalString(env Env) (string, error) {
	out, err := e.Eval(env)
	if err != nil {
		return "", err
	}

	switch v := out.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case int, int64, float64, bool:
		return fmt.Sprint(v), nil
	}

	return "", fmt.Errorf("evaluating %q: got %T, want string", e.Source, out)
}

// EvalTime runs the expression and reads an instant: an RFC 3339 string,
// a time.Time, or a number of Unix seconds.
func (e *Expr) EvalTime(env Env) (time.Time, error) {
	out, err := e.Eval(env)
	if err != nil {
		return time.Time{}, err
	}

	switch v := out.(type) {
	case time.Time:
		return v, nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("evaluating %q: %w", e.Source, err)
		}
		return t, nil
	}

	if f, ok := toFloat(out); ok {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}

	return time.Time{}, fmt.Errorf("evaluating %q: got %T, want an instant", e.Source, out)
}

func firstLine(err error) error {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}

	return errors.New(s)
}

// DurationExpr is a duration written either as a literal ("90s") or as
// an expression giving a duration string or a number of seconds.
type DurationExpr struct {
	Literal time.Duration
	Expr    *Expr
}

// CompileDuration reads src as a duration literal, else as an expression.
func CompileDuration(src string) (*DurationExpr, error) {
	if d, err := time.ParseDuration(strings.TrimSpace(src)); err == nil {
		if d < 0 {
			return nil, fmt.Errorf("negative duration %q", src)
		}
		return &DurationExpr{Literal: d}, nil
	}

	e, err := CompileExpr(src)
	if err != nil {
		return nil, fmt.Errorf("not a duration and %w", err)
	}

	return &DurationExpr{Expr: e}, nil
}

// Eval gives the duration; a negative result counts as zero.
func (d *DurationExpr) Eval(env Env) (time.Duration, error) {
	if d.Expr == nil {
		return d.Literal, nil
	}

	out, err := d.Expr.Eval(env)
	if err != nil {
		return 0, err
	}

	var dur time.Duration
	switch v := out.(type) {
	case string:
		dur, err = time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("evaluating %q: %w", d.Expr.Source, err)
		}
	case time.Duration:
		dur = v
	default:
		f, ok := toFloat(out)
		if !ok {
			return 0, fmt.Errorf("evaluating %q: got %T, want a duration", d.Expr.Source, out)
		}
		dur = time.Duration(f * float64(time.Second))
	}

	return max(dur, 0), nil
}

// Mapping builds a value from expressions: a string is one expression,
// objects and arrays are walked, other values are constants.
type Mapping struct {
	expr   *Expr
	object map[string]*Mapping
	array  []*Mapping
	value  any
}

// CompileMapping compiles every expression in v; path names v in errors.
func CompileMapping(v any, path string) (*Mapping, error) {
	switch t := v.(type) {
	case string:
		e, err := CompileExpr(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &Mapping{expr: e}, nil
	case map[string]any:
		m := &Mapping{object: make(map[string]*Mapping, len(t))}
		for k, sub := range t {
			c, err := CompileMapping(sub, path+"."+k)
			if err != nil {
				return nil, err
			}
			m.object[k] = c
		}
		return m, nil
	case []any:
		m := &Mapping{array: make([]*Mapping, len(t))}
		for i, sub := range t {
			c, err := CompileMapping(sub, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			m.array[i] = c
		}
		if m.array == nil {
			m.array = []*Mapping{}
		}
		return m, nil
	}

	return &Mapping{value: v}, nil
}

// Eval builds the value over env.
func (m *Mapping) Eval(env Env) (any, error) {
	switch {
	case m.expr != nil:
		return m.expr.Eval(env)
	case m.object != nil:
		out := make(map[string]any, len(m.object))
		keys := make([]string, 0, len(m.object))
		for k := range m.object {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, err := m.object[k].Eval(env)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case m.array != nil:
		out := make([]any, len(m.array))
		for i, sub := range m.array {
			v, err := sub.Eval(env)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}

	return m.value, nil
}

// Path is a place in the instance data: keys from the root, written as
// "a.b.c" or with quoted keys as `a["b.c"]`.
type Path []string

// ParsePath reads a data path.
func ParsePath(s string) (Path, error) {
	var p Path
	rest := s
	for rest != "" {
		key, next, err := pathKey(rest)
		if err != nil {
			return nil, fmt.Errorf("path %q: %w", s, err)
		}
		p = append(p, key)

		rest = next
		if strings.HasPrefix(rest, ".") {
			rest = rest[1:]
			if rest == "" {
				return nil, fmt.Errorf("path %q: empty key", s)
			}
		}
	}

	if len(p) == 0 {
		return nil, fmt.Errorf("path %q: empty", s)
	}

	return p, nil
}

// pathKey reads the key at the start of a path: a name up to the next
// '.' or '[', or a quoted string in brackets.
func pathKey(rest string) (key, next string, err error) {
	if strings.HasPrefix(rest, "[") {
		q, err := strconv.QuotedPrefix(rest[1:])
		if err != nil || !strings.HasPrefix(rest[1+len(q):], "]") {
			end := strings.Index(rest, "]")
			if end < 0 {
				return "", "", errors.New("unclosed [")
			}
			return "", "", fmt.Errorf("key %s is not a quoted string", rest[1:end])
		}
		unquoted, _ := strconv.Unquote(q)
		next = rest[1+len(q)+1:]
		if next != "" && next[0] != '.' && next[0] != '[' {
			return "", "", fmt.Errorf("unexpected %q after ]", next[0])
		}
		return unquoted, next, nil
	}

	end := strings.IndexAny(rest, ".[")
	if end < 0 {
		end = len(rest)
	}
	key = rest[:end]
	switch {
	case key == "":
		return "", "", errors.New("empty key")
	case strings.ContainsAny(key, "]\""):
		return "", "", fmt.Errorf("key %s needs quotes and brackets", key)
	}

	return key, rest[end:], nil
}

// String renders the path in the form ParsePath reads.
func (p Path) String() string {
	var b strings.Builder
	for i, k := range p {
		if strings.ContainsAny(k, ".[]\"\\") || k == "" {
			b.WriteString("[" + strconv.Quote(k) + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}

	return b.String()
}

// Set writes v at the path inside data, making objects on the way and
// replacing non-objects that stand in it.
func (p Path) Set(data map[string]any, v any) {
	cur := data
	for _, k := range p[:len(p)-1] {
		next, ok := cur[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[k] = next
		}
		cur = next
	}

	cur[p[len(p)-1]] = v
}

// Overlaps reports whether writing to one path can change the other.
func (p Path) Overlaps(q Path) bool {
	n := min(len(p), len(q))
	for i := range n {
		if p[i] != q[i] {
			return false
		}
	}

	return true
}

// InputSchema is a compiled JSON Schema for start inputs.
type InputSchema struct {
	schema *jsonschema.Schema
}

// CompileSchema compiles a JSON Schema document.
func CompileSchema(doc []byte) (*InputSchema, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("reading schema: %w", err)
	}

	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, v); err != nil {
		return nil, fmt.Errorf("adding schema: %w", err)
	}

	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("compiling schema: %w", schemaError(err))
	}

	// A reference cycle shows only when a value is validated: probe with
	// one value of each JSON type so that such a schema fails here, not
	// at the first start.
	for _, probe := range []any{map[string]any{}, []any{}, "", json.Number("0"), true, nil} {
		if rc, ok := refCycle(s.Validate(probe)); ok {
			return nil, fmt.Errorf("compiling schema: the reference at %q leads back to "+
				"itself, so no value can ever be validated", rc.KeywordLocation1)
		}
	}

	return &InputSchema{schema: s}, nil
}

// refCycle finds a reference cycle among a validation error's causes.
func refCycle(err error) (*kind.RefCycle, bool) {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, false
	}

	var find func(*jsonschema.ValidationError) (*kind.RefCycle, bool)
	find = func(ve *jsonschema.ValidationError) (*kind.RefCycle, bool) {
		if rc, ok := ve.ErrorKind.(*kind.RefCycle); ok {
			return rc, true
		}
		for _, c := range ve.Causes {
			if rc, ok := find(c); ok {
				return rc, true
			}
		}

		return nil, false
	}

	return find(ve)
}

// schemaURL names an input schema inside the compiler; it is not a file
// path, so that messages do not depend on the working directory.
const schemaURL = "https://weft.invalid/input.json"

// noLoader refuses every external reference: an input schema must not
// make the server read files or fetch URLs.
type noLoader struct{}

// Load refuses to load url.
func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external reference %q is not allowed", url)
}

// schemaError makes one line of a schema compilation error: for a schema
// that breaks the metaschema, the deepest causes, joined.
func schemaError(err error) error {
	var sv *jsonschema.SchemaValidationError
	if !errors.As(err, &sv) {
		return firstLine(err)
	}

	lines := strings.Split(sv.Err.Error(), "\n")
	var leaves []string
	for i := 1; i < len(lines); i++ {
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		next := -1
		if i+1 < len(lines) {
			next = len(lines[i+1]) - len(strings.TrimLeft(lines[i+1], " "))
		}
		if next <= indent {
			leaves = append(leaves, strings.TrimPrefix(strings.TrimSpace(lines[i]), "- "))
		}
	}
	if len(leaves) == 0 {
		return firstLine(err)
	}

	return errors.New(strings.Join(leaves, "; "))
}

// Validate checks a JSON document against the schema.
func (s *InputSchema) Validate(doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("reading input: %w", err)
	}

	if err := s.schema.Validate(v); err != nil {
		return fmt.Errorf("does not match the input schema: %s", schemaFaults(err))
	}

	return nil
}

// schemaFaults writes a validation error's faults on one line, without
// the schema's made-up URL: "at '/n': got string, want integer".
func schemaFaults(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	if len(lines) > 1 && strings.HasPrefix(lines[0], "jsonschema validation failed") {
		lines = lines[1:]
	}

	for i, l := range lines {
		lines[i] = strings.TrimPrefix(strings.TrimSpace(l), "- ")
	}

	return strings.Join(lines, "; ")
}

// Normalize turns decoded JSON into values expressions can compute with:
// a json.Number becomes an int when it is whole and fits, a float64 when
// that keeps every digit, and stays a json.Number (which writes back
// unchanged) otherwise.
func Normalize(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(t.String(), 10, 64); err == nil {
			return int(i)
		}
		f, err := strconv.ParseFloat(t.String(), 64)
		if err == nil && sameNumber(t.String(), f) {
			return f
		}
		return t
	case map[string]any:
		for k, sub := range t {
			t[k] = Normalize(sub)
		}
		return t
	case []any:
		for i, sub := range t {
			t[i] = Normalize(sub)
		}
		return t
	}

	return v
}

func sameNumber(text string, f float64) bool {
	back, err := strconv.ParseFloat(strconv.FormatFloat(f, 'g', -1, 64), 64)
	if err != nil || back != f {
		return false
	}

	a, errA := strconv.ParseFloat(text, 64)
	return errA == nil && a == f && significantDigits(text) <= 15
}

func significantDigits(s string) int {
	s = strings.TrimLeft(s, "+-")
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s = s[:i]
	}
	s = strings.Replace(s, ".", "", 1)
	s = strings.TrimLeft(s, "0")
	s = strings.TrimRight(s, "0")

	return len(s)
}

func toFloat(v any) (float64, bool) {
	switch t := v.(type) {
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case float64:
		return t, true
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	}

	return 0, false
}
