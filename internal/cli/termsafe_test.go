package cli

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// sanitise runs in through a termWriter in one write, then again one byte
// per write, and fails if the two differ.
func sanitise(t testing.TB, in string) string {
	var whole bytes.Buffer
	tw := newTermWriter(&whole)
	if n, err := tw.Write([]byte(in)); err != nil || n != len(in) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	var split bytes.Buffer
	tw = newTermWriter(&split)
	for i := 0; i < len(in); i++ {
		tw.Write([]byte{in[i]})
	}
	tw.Flush()
	if whole.String() != split.String() {
		t.Fatalf("%q: one write gives %q, byte by byte %q", in, whole.String(), split.String())
	}
	return whole.String()
}

// terminalSafe says why out could drive a terminal, or "" if it cannot:
// only newline, tab, printable ASCII and printable UTF-8 may reach it.
func terminalSafe(out string) string {
	if !utf8.ValidString(out) {
		return "invalid UTF-8"
	}
	for _, r := range out {
		switch {
		case r == '\n' || r == '\t':
		case r < 0x20 || r == 0x7f:
			return "C0 control or DEL"
		case r >= 0x80 && r <= 0x9f:
			return "C1 control"
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			return "bidi control"
		}
	}
	return ""
}

// TestTermWriterHostile: what a guest prints to its console cannot set the
// operator's clipboard, move the cursor, retitle the window, overwrite a
// line or reorder text; ordinary console output passes unchanged.
func TestTermWriterHostile(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "Linux version 6.1\nok\tdone\n", "Linux version 6.1\nok\tdone\n"},
		{"utf8", "température ✓ 日本\n", "température ✓ 日本\n"},
		{"crlf", "line one\r\nline two\r\r\n", "line one\nline two\n"},
		{"osc52 clipboard BEL", "a\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07b\n", "ab\n"},
		{"osc52 clipboard ST", "a\x1b]52;c;Y3VybA==\x1b\\b\n", "ab\n"},
		{"window title", "\x1b]0;root@host: ~\x07$ \n", "$ \n"},
		{"osc8 hyperlink", "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\\n", "click\n"},
		{"csi colour", "\x1b[1;31mFAILED\x1b[0m\n", "FAILED\n"},
		{"csi clear screen and home", "\x1b[2J\x1b[Hfake prompt\n", "fake prompt\n"},
		{"csi cursor up and erase", "secret\n\x1b[1A\x1b[2Kinnocent\n", "secret\ninnocent\n"},
		{"private mode alt screen", "\x1b[?1049hhidden\x1b[?1049l\n", "hidden\n"},
		{"dcs", "\x1bP+q544e\x1b\\x\n", "x\n"},
		{"apc", "\x1b_Gf=100;AAAA\x1b\\y\n", "y\n"},
		{"two-byte reset", "\x1bcafter\n", "after\n"},
		{"charset designation", "\x1b(0lqk\x1b(B\n", "lqk\n"},
		{"carriage return overwrite", "rm -rf /\rls -l   \n", "rm -rf /^Mls -l   \n"},
		{"backspace overwrite", "evil\b\b\b\bgood\n", "evil^H^H^H^Hgood\n"},
		{"bell and del", "\x07x\x7f\n", "^Gx^?\n"},
		{"c1 csi as utf8", "a\u009b2Jb\n", "a\\u009b2Jb\n"},
		{"raw c1 byte", "a\x9b2Jb\n", "a\\x9b2Jb\n"},
		{"bidi override", "file\u202egnp.exe\n", "file\\u202egnp.exe\n"},
		{"lone esc", "a\x1b\x01b\n", "a^[^Ab\n"},
		{"unterminated osc ends at newline", "\x1b]52;c;" + strings.Repeat("A", 40) + "\nnext line\n", "\nnext line\n"},
		{"endless osc ends after maxSeq", "\x1b]2;" + strings.Repeat("A", maxSeq+10), strings.Repeat("A", len("\x1b]2;")+10)},
		{"endless csi ends after maxSeq", "\x1b[" + strings.Repeat("1", maxSeq+10) + "m", strings.Repeat("1", len("\x1b[")+10) + "m"},
		{"cr kept across erase", "progress 50%\r\x1b[K\n", "progress 50%\n"},
		{"truncated utf8 at end", "ok \xe2\x9c", "ok \\xe2\\x9c"},
		{"invalid utf8", "\xc0\xafx\xff\n", "\\xc0\\xafx\\xff\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sanitise(t, tc.in)
			if got != tc.want {
				t.Errorf("%q gave %q, want %q", tc.in, got, tc.want)
			}
			if why := terminalSafe(got); why != "" {
				t.Errorf("%q gave %q: %s", tc.in, got, why)
			}
		})
	}
}

// FuzzTermWriter: whatever the guest writes, and however it is split, the
// output holds nothing a terminal acts on.
func FuzzTermWriter(f *testing.F) {
	for _, s := range []string{"", "plain\r\n", "\x1b]52;c;QQ==\x07", "\x1b[2J", "\x1bP1$r\x1b\\", "\u009b\u202e", "\xe2\x9c", "\r\x1b[K\n", "\x1b\x1b[", "\xf4\x90\x80\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := sanitise(t, string(in))
		if why := terminalSafe(out); why != "" {
			t.Fatalf("%q gave %q: %s", in, out, why)
		}
	})
}

// TestConsoleCommandFilters runs `azote instance console` against a server
// whose console holds hostile bytes: by default none of them reaches the
// terminal; with --raw all of them do, unchanged.
func TestConsoleCommandFilters(t *testing.T) {
	hostile := "boot ok\r\n\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07\x1b[2J\x1b[Hfake login: \x1b[8mhidden\x1b[0m\r\n"
	sock := filepath.Join(t.TempDir(), "azoted.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/instances/{ref}/console", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, hostile)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()
	t.Setenv("AZOTE_SOCKET", sock)
	t.Setenv("AZOTE_PROFILE", "")
	t.Setenv("AZOTE_ENDPOINT", "")

	var out, errb bytes.Buffer
	if code := Main([]string{"instance", "console", "i-0123456789abcdef"}, &out, &errb); code != 0 {
		t.Fatalf("console: exit %d: %s", code, errb.String())
	}
	if want := "boot ok\nfake login: hidden\n"; out.String() != want {
		t.Errorf("console printed %q, want %q", out.String(), want)
	}
	out.Reset()
	if code := Main([]string{"instance", "console", "--raw", "i-0123456789abcdef"}, &out, &errb); code != 0 {
		t.Fatalf("console --raw: exit %d: %s", code, errb.String())
	}
	if out.String() != hostile {
		t.Errorf("console --raw printed %q, want the bytes unchanged %q", out.String(), hostile)
	}
}
