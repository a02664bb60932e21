package cli

import (
	"io"
	"unicode/utf8"
)

// termWriter passes a guest's console to the operator's terminal without
// letting it drive the terminal. The guest chooses every byte, and a
// terminal obeys escape sequences: OSC 52 sets the clipboard, CSI moves the
// cursor and erases what was printed, OSC 8 makes links, DCS reaches
// terminal-specific features, a carriage return or backspaces overwrite a
// line. What reaches w is printable UTF-8, newlines and tabs only:
//
//   - complete escape sequences (CSI, OSC, DCS/SOS/PM/APC strings, and the
//     two-byte ESC forms) are removed; an unterminated string sequence ends
//     at a newline or after maxSeq bytes, so it cannot swallow the output
//     that follows;
//   - "\r\n" becomes "\n"; any other control character is shown in caret
//     notation (^M, ^H, ^G, ^? for DEL, ^[ for an ESC that starts no
//     sequence);
//   - C1 controls (U+0080-U+009F, which some terminals obey like ESC
//     sequences), bidirectional overrides and isolates (which reorder what
//     the reader sees), and bytes that are not UTF-8 are shown as \u009b,
//     \u202e, \x9b.
//
// Sequences and UTF-8 characters split across writes are handled; Flush
// writes what a last, incomplete one held.
type termWriter struct {
	w     io.Writer
	state seqState
	seq   int    // bytes of the current sequence so far
	cr    int    // carriage returns not yet known to end a line
	utf   []byte // an incomplete UTF-8 character
	out   []byte
}

type seqState uint8

const (
	ground   seqState = iota
	escape            // after ESC
	escInter          // ESC, intermediates (0x20-0x2F), waiting for a final byte
	csi               // ESC [ ... waiting for a final byte (0x40-0x7E)
	str               // OSC, DCS, SOS, PM or APC: until BEL or ST
	strEsc            // an ESC inside a string: ST if a backslash follows
)

// maxSeq bounds how much of the output one escape sequence can hide: a
// sequence spans at most maxSeq bytes, ESC included.
const maxSeq = 256

func newTermWriter(w io.Writer) *termWriter { return &termWriter{w: w} }

// Write filters p; it reports len(p) when what it made of p was written.
func (t *termWriter) Write(p []byte) (int, error) {
	t.out = t.out[:0]
	for _, b := range p {
		t.byte(b)
	}
	if len(t.out) == 0 {
		return len(p), nil
	}
	if _, err := t.w.Write(t.out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what a sequence cut off by the end of the output held: a
// pending carriage return and an incomplete UTF-8 character, escaped.
func (t *termWriter) Flush() error {
	t.out = t.out[:0]
	t.flushCR()
	t.flushUTF()
	t.state = ground
	if len(t.out) == 0 {
		return nil
	}
	_, err := t.w.Write(t.out)
	return err
}

func (t *termWriter) byte(b byte) {
	switch t.state {
	case escape:
		t.seq++
		switch {
		case b == '[':
			t.state = csi
		case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
			t.state = str
		case b >= 0x20 && b <= 0x2f:
			t.state = escInter
		case b >= 0x30 && b <= 0x7e:
			t.state = ground // a two-byte sequence, removed
		default:
			// ESC followed by a control or a non-ASCII byte starts no
			// sequence: show the ESC, then treat the byte as text.
			t.state = ground
			t.flushCR()
			t.out = append(t.out, '^', '[')
			t.text(b)
		}
		return
	case escInter, csi:
		t.seq++
		final := b >= 0x30 && b <= 0x7e
		if t.state == csi {
			final = b >= 0x40 && b <= 0x7e
			if b >= 0x20 && b <= 0x3f && t.seq <= maxSeq {
				return // parameters and intermediates
			}
		} else if b >= 0x20 && b <= 0x2f && t.seq <= maxSeq {
			return
		}
		t.state = ground
		if !final {
			t.text(b) // the sequence was malformed or too long; b is text
		}
		return
	case str, strEsc:
		t.seq++
		switch {
		case b == 0x07 || (t.state == strEsc && b == '\\'):
			t.state = ground
		case b == '\n' || t.seq > maxSeq:
			t.state = ground
			t.text(b)
		case b == 0x1b:
			t.state = strEsc
		default:
			t.state = str
		}
		return
	}
	t.text(b)
}

// text handles a byte outside any escape sequence.
func (t *termWriter) text(b byte) {
	if len(t.utf) > 0 {
		if b >= 0x80 && b < 0xc0 {
			t.utf = append(t.utf, b)
			if utf8.FullRune(t.utf) {
				t.rune()
			}
			return
		}
		t.flushUTF() // not a continuation: what came before was invalid
	}
	if b == '\r' {
		t.cr++
		return
	}
	if b == '\n' {
		t.cr = 0
		t.out = append(t.out, '\n')
		return
	}
	if b == 0x1b {
		// A carriage return stays pending across a removed sequence:
		// "\r\x1b[K\n" ends a line.
		t.state, t.seq = escape, 1
		return
	}
	t.flushCR()
	switch {
	case b == '\t':
		t.out = append(t.out, b)
	case b < 0x20:
		t.out = append(t.out, '^', b+'@')
	case b == 0x7f:
		t.out = append(t.out, '^', '?')
	case b < 0x80:
		t.out = append(t.out, b)
	default:
		t.utf = append(t.utf[:0], b)
		if utf8.FullRune(t.utf) {
			t.rune()
		}
	}
}

// rune writes the complete UTF-8 sequence in t.utf, escaped if it is
// invalid or a character that must not reach a terminal.
func (t *termWriter) rune() {
	r, n := utf8.DecodeRune(t.utf)
	switch {
	case r == utf8.RuneError && n <= 1:
		t.flushUTF()
		return
	case r >= 0x80 && r <= 0x9f, // C1 controls
		r >= 0x202a && r <= 0x202e,                // bidi embeddings and overrides
		r >= 0x2066 && r <= 0x2069,                // bidi isolates
		r == 0x200e || r == 0x200f || r == 0x061c: // bidi marks
		t.out = append(t.out, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
	default:
		// t.utf holds exactly one character: text calls this as soon
		// as the bytes so far make one.
		t.out = append(t.out, t.utf[:n]...)
	}
	t.utf = t.utf[:0]
}

// flushUTF escapes the bytes of an incomplete or invalid UTF-8 sequence.
func (t *termWriter) flushUTF() {
	for _, b := range t.utf {
		t.out = append(t.out, '\\', 'x', hex[b>>4], hex[b&15])
	}
	t.utf = t.utf[:0]
}

// flushCR shows carriage returns that did not end a line.
func (t *termWriter) flushCR() {
	for ; t.cr > 0; t.cr-- {
		t.out = append(t.out, '^', 'M')
	}
}

const hex = "0123456789abcdef"
