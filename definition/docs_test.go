package definition

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// docBlock is a fenced code block of a document.
type docBlock struct {
	lang string
	line int
	text string
}

// fencedBlocks returns the fenced code blocks of a Markdown document.
func fencedBlocks(t *testing.T, doc []byte) []docBlock {
	t.Helper()

	var blocks []docBlock
	var cur *docBlock
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &docBlock{lang: strings.TrimPrefix(line, "```"), line: n}
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading document: %v", err)
	}
	if cur != nil {
		t.Fatalf("code block at line %d is not closed", cur.line)
	}

	return blocks
}

// refusedFaults returns the faults a block's "# refused: " lines name.
func refusedFaults(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if fault, ok := strings.CutPrefix(line, "# refused: "); ok {
			out = append(out, fault)
		}
	}

	return out
}

// TestDocsExamplesCompile parses and compiles every yaml and json block
// of docs/definitions.md: a block is a whole definition that compiles,
// unless it has "# refused: " lines, which must then be exactly its
// faults. Together the blocks that compile use every step kind.
func TestDocsExamplesCompile(t *testing.T) {
	doc := readFile(t, "../docs/definitions.md")

	kinds := map[Kind]bool{}
	checked := 0
	for _, b := range fencedBlocks(t, doc) {
		if b.lang != "yaml" && b.lang != "json" {
			continue
		}
		checked++

		g, err := parseAndCompile([]byte(b.text))
		want := refusedFaults(b.text)
		if len(want) > 0 {
			if err == nil {
				t.Errorf("block at line %d: compiled, want refused with %q", b.line, want)
				continue
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Errorf("block at line %d: faults\n%s\nwant\n%s", b.line, got,
					strings.Join(want, "\n"))
			}
			continue
		}
		if err != nil {
			t.Errorf("block at line %d: %v", b.line, err)
			continue
		}

		for id, n := range g.Nodes {
			if id != RootID && id != CancelID {
				kinds[n.Kind] = true
			}
		}
		if len(g.Cancel.Block(BlockSteps)) > 0 {
			kinds["on_cancel"] = true
		}
	}

	if checked < 10 {
		t.Errorf("checked %d examples, want at least 10", checked)
	}
	for k := range kindFields {
		if !kinds[k] {
			t.Errorf("no example that compiles uses a %s step", k)
		}
	}
	if !kinds["on_cancel"] {
		t.Error("no example that compiles has on_cancel steps")
	}
}

func TestFencedBlocksReadsLanguageAndText(t *testing.T) {
	doc := []byte("intro\n```yaml\na: 1\n```\ntext\n```\nplain\n```\n")

	got := fencedBlocks(t, doc)

	if len(got) != 2 || got[0].lang != "yaml" || got[0].text != "a: 1\n" || got[0].line != 2 ||
		got[1].lang != "" || got[1].text != "plain\n" {
		t.Fatalf("blocks = %+v", got)
	}
}
