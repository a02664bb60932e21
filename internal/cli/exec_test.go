package cli

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestEscapeReader(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{"ls\r~.rest", "ls\r"},
		{"~.", ""},
		{"a~.b\r", "a~.b\r"}, // not at a line start
		{"\r~~x", "\r~x"},
		{"\r~x", "\r~x"},
	} {
		x := &escapeReader{r: strings.NewReader(c.in), atLineStart: true}
		got, err := io.ReadAll(x)
		if string(got) != c.out {
			t.Errorf("%q: passed %q, want %q", c.in, got, c.out)
		}
		if strings.Contains(c.in, "~.") && c.out != c.in && !errors.Is(err, errEscape) {
			t.Errorf("%q: err %v, want the escape", c.in, err)
		}
	}
}
