package definition

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseCompile feeds random sources to Parse and Compile. Neither may
// panic; every refusal must be a *ValidationError; and a definition that
// compiles must survive Canonical, Parse and Compile with the same
// meaning.
func FuzzParseCompile(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		for _, file := range sources(f, dir) {
			f.Add(readFile(f, file))
		}
	}

	f.Fuzz(func(t *testing.T, src []byte) {
		d, err := Parse(src)
		if err != nil {
			requireValidationError(t, "parsing", err)
			return
		}
		g, err := Compile(d)
		if err != nil {
			requireValidationError(t, "compiling", err)
			return
		}

		first, err := Canonical(d)
		if err != nil {
			t.Fatalf("canonical form of a compiled definition: %v", err)
		}
		again, err := Parse(first)
		if err != nil {
			t.Fatalf("parsing the canonical form: %v\n%s", err, first)
		}
		g2, err := Compile(again)
		if err != nil {
			t.Fatalf("compiling the canonical form: %v\n%s", err, first)
		}
		if a, b := Digest(g), Digest(g2); a != b {
			t.Fatalf("canonical form compiles to another graph:\n%s\n%s", a, b)
		}
		second, err := Canonical(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("canonical form not stable:\n%s\n%s", first, second)
		}
	})
}

// requireValidationError fails the test unless err is a *ValidationError
// with at least one fault.
func requireValidationError(t *testing.T, doing string, err error) {
	t.Helper()

	var verr *ValidationError
	if !errors.As(err, &verr) || len(verr.Faults) == 0 {
		t.Fatalf("%s: got %T %v, want a *ValidationError", doing, err, err)
	}
}
