package agent

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []Frame{
		{Type: FrameOpen, Session: 1, Payload: encodeJSON(OpenRequest{Argv: []string{"echo", "hi"}})},
		{Type: FrameStdout, Session: 0xfffffffe, Payload: bytes.Repeat([]byte{0, '\n', 0xff}, MaxData/3)},
		{Type: FrameOpened, Session: 7},
		CreditFrame(3, Window),
		ResizeFrame(3, 24, 80),
	} {
		line, err := AppendFrame(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(line) > MaxFrameLine || bytes.IndexByte(line[:len(line)-1], '\n') >= 0 {
			t.Fatalf("frame type %d: line of %d bytes (max %d) or with an inner newline", f.Type, len(line), MaxFrameLine)
		}
		g, err := ParseFrame(line[:len(line)-1])
		if err != nil || g.Type != f.Type || g.Session != f.Session || !bytes.Equal(g.Payload, f.Payload) {
			t.Fatalf("round trip of type %d: %+v, %v", f.Type, g, err)
		}
	}
	if _, err := AppendFrame(nil, Frame{Type: FrameStdout, Payload: make([]byte, MaxData+1)}); !errors.Is(err, ErrFrame) {
		t.Fatalf("over-long payload encoded: %v", err)
	}
}

func TestParseFrameRefuses(t *testing.T) {
	enc := func(raw []byte) string {
		b, _ := AppendFrame(nil, Frame{Type: FrameType(raw[0]), Session: 1, Payload: raw[1:]})
		return strings.TrimSuffix(string(b), "\n")
	}
	for name, line := range map[string]string{
		"no tag":           "stop",
		"old tag":          "X0 AQAAAAE",
		"bad base64":       "X1 !!!!",
		"short":            "X1 AQ",
		"unknown type":     enc([]byte{99}),
		"credit too short": enc([]byte{byte(FrameCredit), 1, 2}),
		"resize too long":  enc([]byte{byte(FrameResize), 1, 2, 3, 4, 5}),
		"opened with data": enc([]byte{byte(FrameOpened), 1}),
		"too long":         "X1 " + strings.Repeat("A", MaxFrameLine),
	} {
		if _, err := ParseFrame([]byte(line)); !errors.Is(err, ErrFrame) {
			t.Errorf("%s: ParseFrame = %v, want ErrFrame", name, err)
		}
	}
}

func TestOpenRequestValidate(t *testing.T) {
	long := make([]string, MaxArgs+1)
	for i := range long {
		long[i] = "a"
	}
	for name, r := range map[string]OpenRequest{
		"empty":     {},
		"many args": {Argv: long},
		"big args":  {Argv: []string{strings.Repeat("a", MaxArgBytes)}},
		"nul":       {Argv: []string{"a\x00b"}},
		"bad user":  {Argv: []string{"id"}, User: "../root"},
	} {
		if r.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (OpenRequest{Login: true, TTY: true}).Validate(); err != nil {
		t.Errorf("login shell refused: %v", err)
	}
}

// FuzzParseFrame: any line either parses into a frame within bounds that
// encodes back to the same frame, or is refused with ErrFrame.
func FuzzParseFrame(f *testing.F) {
	for _, fr := range []Frame{{Type: FrameOpen, Session: 1, Payload: []byte(`{"argv":["id"]}`)}, CreditFrame(1, 5), ResizeFrame(2, 1, 1), {Type: FrameKill, Session: 9}} {
		b, _ := AppendFrame(nil, fr)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte("X1 "))
	f.Add([]byte("ping"))
	f.Fuzz(func(t *testing.T, line []byte) {
		fr, err := ParseFrame(line)
		if err != nil {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("error %v is not ErrFrame", err)
			}
			return
		}
		if len(fr.Payload) > MaxData {
			t.Fatalf("payload of %d bytes accepted", len(fr.Payload))
		}
		b, err := AppendFrame(nil, fr)
		if err != nil {
			t.Fatal(err)
		}
		g, err := ParseFrame(b[:len(b)-1])
		if err != nil || g.Type != fr.Type || g.Session != fr.Session || !bytes.Equal(g.Payload, fr.Payload) {
			t.Fatalf("re-encoded frame differs: %+v vs %+v (%v)", g, fr, err)
		}
	})
}
