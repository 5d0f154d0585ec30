package definition

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the .golden files of testdata/invalid")

// sources lists the definition files of a testdata folder.
func sources(t testing.TB, dir string) []string {
	t.Helper()

	var files []string
	for _, ext := range []string{"*.yaml", "*.json"} {
		found, err := filepath.Glob(filepath.Join("testdata", dir, ext))
		if err != nil {
			t.Fatalf("listing %s: %v", dir, err)
		}
		files = append(files, found...)
	}
	if len(files) == 0 {
		t.Fatalf("no files in testdata/%s", dir)
	}

	return files
}

// parseAndCompile runs a source through Parse and Compile.
func parseAndCompile(src []byte) (*Graph, error) {
	d, err := Parse(src)
	if err != nil {
		return nil, err
	}

	return Compile(d)
}

func TestInvalidGolden(t *testing.T) {
	files := sources(t, "invalid")
	if len(files) < 25 {
		t.Errorf("got %d invalid examples, want at least 25", len(files))
	}

	stems := map[string]string{}
	for _, file := range files {
		stem := strings.TrimSuffix(file, filepath.Ext(file))
		if other, dup := stems[stem]; dup {
			t.Errorf("%s and %s would share one golden file", other, file)
		}
		stems[stem] = file
	}
	goldens, _ := filepath.Glob(filepath.Join("testdata", "invalid", "*.golden"))
	for _, golden := range goldens {
		if _, ok := stems[strings.TrimSuffix(golden, ".golden")]; !ok {
			t.Errorf("%s has no source", golden)
		}
	}

	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parseAndCompile(src)
			if err == nil {
				t.Fatal("got no error")
			}
			got := err.Error() + "\n"

			golden := strings.TrimSuffix(file, filepath.Ext(file)) + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create it): %v", err)
			}
			if got != string(want) {
				t.Errorf("error text differs from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestValidExamples(t *testing.T) {
	kinds := map[Kind]bool{}
	for _, file := range sources(t, "valid") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			g, err := parseAndCompile(src)
			if err != nil {
				t.Fatalf("compiling: %v", err)
			}
			for id, n := range g.Nodes {
				if id != RootID && id != CancelID {
					kinds[n.Kind] = true
				}
			}
		})
	}

	for k := range kindFields {
		if !kinds[k] {
			t.Errorf("no valid example uses a %s step", k)
		}
	}
}

// readFile reads a test file or stops the test.
func readFile(t testing.TB, name string) []byte {
	t.Helper()

	src, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}

	return src
}
