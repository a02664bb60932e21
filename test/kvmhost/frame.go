package kvmhost

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxOutput bounds what Run keeps of a command's output.
const maxOutput = 64 << 20

var errOutputTooLarge = fmt.Errorf("kvmhost: the command wrote more than %d MiB", maxOutput>>20)

// framer parses the output port: whatever comes before the begin line is
// dropped (it is only the script's own diagnostics), the bytes after it
// are the command's output up to the end line, which carries its status:
//
//	AZOTE-KVMHOST <nonce> BEGIN\n
//	...output...\n
//	AZOTE-KVMHOST <nonce> END <status>\n
//
// The script writes a newline before the end line, so the end line
// always starts a line, and the framer takes that newline off again. In
// place of the begin line the script may write "<nonce> NOKVM".
//
// Output is passed on to w as it arrives, except for a tail that could be
// the start of the end line.
type framer struct {
	nonce string
	w     io.Writer // may be nil

	begin, noKVM []byte // whole lines, without the newline
	end          []byte // "\nAZOTE-KVMHOST <nonce> END "

	started bool
	pre     []byte // before the begin line: the current partial line
	preLong bool   // that line is already too long to be a marker
	buf     []byte // after it
	sent    int    // bytes of buf passed on to w
	werr    error  // w's first error; w gets nothing after it

	done   bool
	status int
	err    error // ErrNoKVM, or a malformed end line
}

func newFramer(nonce string, w io.Writer) *framer {
	m := "AZOTE-KVMHOST " + nonce
	return &framer{
		nonce: nonce, w: w,
		begin: []byte(m + " BEGIN"),
		noKVM: []byte(m + " NOKVM"),
		end:   []byte("\n" + m + " END "),
	}
}

// Write takes bytes from the port. It fails only when the command wrote
// more than maxOutput; bytes after the end line are ignored.
func (f *framer) Write(p []byte) (int, error) {
	n := len(p)
	if f.done {
		return n, nil
	}
	if !f.started {
		f.pre = append(f.pre, p...)
		p = nil
		for {
			i := bytes.IndexByte(f.pre, '\n')
			if i < 0 {
				break
			}
			line := f.pre[:i]
			rest := f.pre[i+1:]
			switch {
			case f.preLong:
				f.preLong = false
			case bytes.Equal(line, f.begin):
				f.started = true
				p = rest
			case bytes.Equal(line, f.noKVM):
				f.done, f.err = true, ErrNoKVM
				return n, nil
			}
			f.pre = rest
			if f.started {
				f.pre = nil
				break
			}
		}
		if !f.started {
			if len(f.pre) > len(f.begin) { // no line this long is a marker
				f.pre, f.preLong = f.pre[:0], true
			}
			return n, nil
		}
	}
	if len(f.buf)+len(p) > maxOutput {
		f.done, f.err = true, errOutputTooLarge
		return n, errOutputTooLarge
	}
	f.buf = append(f.buf, p...)
	if i := bytes.Index(f.buf, f.end); i >= 0 {
		rest := f.buf[i+len(f.end):]
		j := bytes.IndexByte(rest, '\n')
		if j < 0 {
			f.pass(i) // the status is still on its way
			return n, nil
		}
		f.done = true
		f.status, f.err = strconv.Atoi(string(rest[:j]))
		if f.err != nil {
			f.err = fmt.Errorf("kvmhost: malformed end line %q", rest[:j])
		}
		f.pass(i)
		f.buf = f.buf[:i]
		return n, nil
	}
	f.pass(len(f.buf) - partialSuffix(f.buf, f.end))
	return n, nil
}

// pass sends buf[sent:upto] on to w.
func (f *framer) pass(upto int) {
	if upto <= f.sent {
		return
	}
	if f.w != nil && f.werr == nil {
		_, f.werr = f.w.Write(f.buf[f.sent:upto])
	}
	f.sent = upto
}

// partialSuffix is the length of the longest suffix of b that is a proper
// prefix of m: bytes that may yet turn out to be m.
func partialSuffix(b, m []byte) int {
	for n := min(len(b), len(m)-1); n > 0; n-- {
		if bytes.HasSuffix(b, m[:n]) {
			return n
		}
	}
	return 0
}

// result is the command's status and output once the end line is in.
func (f *framer) result() (status int, output []byte, err error) {
	if !f.done {
		return 0, nil, errors.New("kvmhost: no end line")
	}
	return f.status, f.buf, f.err
}
