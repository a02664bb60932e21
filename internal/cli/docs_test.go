package cli

import (
	"errors"
	"github.com/spf13/pflag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// commandLines finds every azote command line in README.md and docs/*.md:
// lines of code blocks and `inline code` that start with azote (or a path
// ending in /azote, or sudo azote).
func commandLines(t *testing.T) map[string][]string {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	inline := regexp.MustCompile("`([^`]*)`")
	start := regexp.MustCompile(`(?:^|[\s$(])(?:sudo\s+)?(?:[\w./-]*/)?azote\s+([a-z].*)$`)
	out := map[string][]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inBlock := false
		for n, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inBlock = !inBlock
				continue
			}
			var cands []string
			if inBlock {
				cands = []string{line}
			} else {
				for _, m := range inline.FindAllStringSubmatch(line, -1) {
					cands = append(cands, m[1])
				}
			}
			for _, c := range cands {
				for _, part := range regexp.MustCompile(`;|&&|\|\||\s\|\s`).Split(c, -1) {
					m := start.FindStringSubmatch(strings.TrimSpace(part))
					if m == nil {
						continue
					}
					where := filepath.Base(f) + ":" + itoa(n+1)
					words := shellWords(m[1])
					if !inBlock && len(words) == 2 && !strings.HasPrefix(words[1], "-") {
						// `azote noun verb` in prose names the verb.
						words = append(words, "--help")
					}
					out[where+": azote "+m[1]] = words
				}
			}
		}
	}
	return out
}

func itoa(n int) string {
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}

// shellWords splits a command line as sh would, enough for docs: quotes,
// and it stops at a comment or a redirection.
func shellWords(s string) []string {
	var out []string
	for _, w := range splitWords(s) {
		if w != "…" && w != "..." {
			out = append(out, w)
		}
	}
	return out
}

func splitWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case (c == '#' || c == '>' || c == '<') && !in:
			return words
		case c == '\\' && i+1 == len(s):
		case (c == '[' || c == ']') && quote == 0:
			// A synopsis: [--flag VALUE] is an optional flag.
		case c == '(' && !in:
			return words // prose follows
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// TestDocsCommandLines checks that every azote command line in the docs
// names a real verb with its real flags and the right number of
// arguments.
func TestDocsCommandLines(t *testing.T) {
	lines := commandLines(t)
	if len(lines) < 20 {
		t.Fatalf("found only %d command lines in the docs", len(lines))
	}
	known := map[string]bool{}
	for _, v := range verbs() {
		known[strings.Fields(v)[0]] = true
	}
	for where, args := range lines {
		if len(args) == 0 || (!known[args[0]] && len((&env{}).rootCommand().SuggestionsFor(args[0])) == 0) {
			continue // prose ("the azote card"), not a command line
		}
		if err := parses(args); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
}

// parses checks a command line against the real tree without running it.
func parses(args []string) error {
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	root := e.rootCommand()
	c, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if !c.Runnable() || c == root || c.HasSubCommands() {
		return usageError{msg: "not a verb: " + c.CommandPath()}
	}
	if err := c.ParseFlags(placeholders(c, rest)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := c.ValidateArgs(c.Flags().Args()); err != nil {
		return err
	}
	return e.checkOutput(c)
}

// placeholders replaces a synopsis's placeholder values (N, BYTES,
// true|false) of typed flags with a value of the flag's type.
func placeholders(c *cobra.Command, args []string) []string {
	ph := regexp.MustCompile(`^([A-Z][A-Za-z/]*|[a-z]+(\|[a-z]+)+)$`)
	sample := map[string]string{"func": "true", "int": "1", "int64": "1", "bool": "true", "duration": "1m"}
	out := append([]string(nil), args...)
	for i, a := range out {
		name, val, eq := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") {
			continue
		}
		f := c.Flags().Lookup(name)
		if f == nil || sample[f.Value.Type()] == "" {
			continue
		}
		if eq && ph.MatchString(val) {
			out[i] = "--" + name + "=" + sample[f.Value.Type()]
		} else if !eq && i+1 < len(out) && ph.MatchString(out[i+1]) && f.Value.Type() != "bool" {
			out[i+1] = sample[f.Value.Type()]
		}
	}
	return out
}
