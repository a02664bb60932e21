package trustdomains

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the link table in docs/architecture.md")

const (
	archDoc   = "../../docs/architecture.md"
	tableOpen = "<!-- linktable:begin -->"
	tableEnd  = "<!-- linktable:end -->"
)

// linkTable lists, for every main package under cmd/, the module's
// internal packages it links (go list's Deps: every package compiled into
// the binary), as a Markdown table with one row per internal package and
// one column per binary. It lists for linux/amd64, whatever the host, so
// the table does not change with the machine that generates it.
func linkTable(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{range .Deps}} {{.}}{{end}}{{end}}`, "./cmd/...")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list ./cmd/...: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list ./cmd/...: %v", err)
	}
	var binaries []string
	links := map[string]map[string]bool{} // internal package -> binary -> linked
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bin := strings.TrimPrefix(f[0], module)
		binaries = append(binaries, bin)
		for _, d := range f[1:] {
			rel, ok := strings.CutPrefix(d, module)
			if !ok || !(rel == "internal" || strings.HasPrefix(rel, "internal/")) {
				continue
			}
			if links[rel] == nil {
				links[rel] = map[string]bool{}
			}
			links[rel][bin] = true
		}
	}
	if len(binaries) == 0 {
		t.Fatal("go list found no main package under cmd/")
	}
	slices.Sort(binaries)
	pkgs := make([]string, 0, len(links))
	for p := range links {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)

	var b strings.Builder
	b.WriteString("| package |")
	for _, bin := range binaries {
		fmt.Fprintf(&b, " `%s` |", strings.TrimPrefix(bin, "cmd/"))
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat(":-:|", len(binaries)))
	b.WriteString("\n")
	for _, p := range pkgs {
		fmt.Fprintf(&b, "| `%s` |", p)
		for _, bin := range binaries {
			if links[p][bin] {
				b.WriteString(" ● |")
			} else {
				b.WriteString("   |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// splitTable returns doc before the table (through the opening marker's
// line), the table, and the rest (from the closing marker).
func splitTable(doc []byte) (before, table, after []byte, err error) {
	i := bytes.Index(doc, []byte(tableOpen))
	j := bytes.Index(doc, []byte(tableEnd))
	if i < 0 || j < 0 || j < i || bytes.Count(doc, []byte(tableOpen)) != 1 || bytes.Count(doc, []byte(tableEnd)) != 1 {
		return nil, nil, nil, fmt.Errorf("want exactly one %s followed by one %s", tableOpen, tableEnd)
	}
	start := i + len(tableOpen)
	if nl := bytes.IndexByte(doc[start:], '\n'); nl >= 0 && start+nl < j {
		start += nl + 1
	} else {
		return nil, nil, nil, fmt.Errorf("%s must end its line", tableOpen)
	}
	return doc[:start], doc[start:j], doc[j:], nil
}

// TestLinkTable fails when the table in docs/architecture.md no longer
// says which internal packages each binary links; with -update it
// rewrites the table instead:
//
//	go test ./test/trustdomains -run TestLinkTable -update
func TestLinkTable(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to list dependencies")
	}
	want := linkTable(t)
	doc, err := os.ReadFile(archDoc)
	if err != nil {
		t.Fatal(err)
	}
	before, got, after, err := splitTable(doc)
	if err != nil {
		t.Fatalf("%s: %v", archDoc, err)
	}
	if string(got) == want {
		return
	}
	if *update {
		out := slices.Concat(before, []byte(want), after)
		if err := os.WriteFile(archDoc, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the link table in %s", archDoc)
		return
	}
	t.Errorf("the link table in %s is stale; regenerate it with\n\tgo test ./test/trustdomains -run TestLinkTable -update\nwant:\n%s\ngot:\n%s", archDoc, want, got)
}

// TestSplitTable checks the marker handling, so that a doc that lost a
// marker fails rather than has its text replaced.
func TestSplitTable(t *testing.T) {
	for _, tc := range []struct {
		doc, table string
		ok         bool
	}{
		{doc: "a\n" + tableOpen + "\n| x |\n" + tableEnd + "\nb\n", table: "| x |\n", ok: true},
		{doc: "a\n" + tableOpen + "\n" + tableEnd + "\n", table: "", ok: true},
		{doc: "a\n" + tableOpen + "\n| x |\n"},
		{doc: "a\n| x |\n" + tableEnd + "\n"},
		{doc: tableEnd + "\n" + tableOpen + "\n"},
		{doc: tableOpen + "\n" + tableEnd + "\n" + tableOpen + "\n" + tableEnd + "\n"},
		{doc: tableOpen + tableEnd + "\n"},
	} {
		before, table, after, err := splitTable([]byte(tc.doc))
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.doc, err, tc.ok)
			continue
		}
		if tc.ok && (string(table) != tc.table || string(before)+string(table)+string(after) != tc.doc) {
			t.Errorf("%q: split into %q %q %q", tc.doc, before, table, after)
		}
	}
}
