package imds

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// Bounds of one request. EC2's clients send a request line, a handful of
// headers and no body; anything near these limits is not a client of
// the metadata service.
const (
	// MaxHeader bounds the request line and headers, CRLFs included.
	MaxHeader = 8 << 10
	// MaxBody bounds a request's body, which the service reads and
	// ignores (no IMDS call has one).
	MaxBody = 4 << 10
	// maxHeaders bounds the header lines of one request.
	maxHeaders = 64
)

// Errors of ParseRequest. ErrIncomplete asks for more bytes; every other
// one is a malformed request, answered 400 and the connection closed.
var (
	ErrIncomplete = errors.New("imds: incomplete request")
	ErrMalformed  = errors.New("imds: malformed request")
	ErrTooLarge   = errors.New("imds: request too large")
)

// Request is one parsed HTTP request, the parts the service looks at.
// Its strings are copies: nothing refers to the buffer it was parsed
// from.
type Request struct {
	Method string
	Path   string // the target without its query
	// Close: the client asked for the connection to close after the
	// answer (HTTP/1.0 without keep-alive, or Connection: close).
	Close bool

	Token         string // X-aws-ec2-metadata-token
	HasToken      bool
	TTL           string // X-aws-ec2-metadata-token-ttl-seconds
	HasTTL        bool
	ForwardedFor  bool // any X-Forwarded-For header
	ContentLength int
}

// ParseRequest parses the request at the start of b and returns it with
// the bytes it took (headers and body). It returns ErrIncomplete when b
// holds only the start of a request that may still be valid, an error
// wrapping ErrMalformed or ErrTooLarge when it cannot be.
func ParseRequest(b []byte) (Request, int, error) {
	var r Request
	end := bytes.Index(b, []byte("\r\n\r\n"))
	sep := 4
	if lf := bytes.Index(b, []byte("\n\n")); lf >= 0 && (end < 0 || lf < end) {
		end, sep = lf, 2 // bare LFs, as RFC 9112 §2.2 lets a server accept
	}
	if end < 0 {
		if len(b) >= MaxHeader {
			return r, 0, fmt.Errorf("%w: headers over %d bytes", ErrTooLarge, MaxHeader)
		}
		return r, 0, ErrIncomplete
	}
	if end+sep > MaxHeader {
		return r, 0, fmt.Errorf("%w: headers over %d bytes", ErrTooLarge, MaxHeader)
	}
	lines := bytes.Split(b[:end], []byte("\n"))
	if len(lines) > maxHeaders+1 {
		return r, 0, fmt.Errorf("%w: over %d header lines", ErrTooLarge, maxHeaders)
	}
	http10, err := r.requestLine(trimCR(lines[0]))
	if err != nil {
		return r, 0, err
	}
	keepAlive := false
	hasLength := false
	for _, l := range lines[1:] {
		l = trimCR(l)
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 {
			return r, 0, fmt.Errorf("%w: header line without a name", ErrMalformed)
		}
		name, value := l[:colon], bytes.Trim(l[colon+1:], " \t")
		if !isToken(name) {
			return r, 0, fmt.Errorf("%w: header name %q", ErrMalformed, name)
		}
		if !isFieldValue(value) {
			return r, 0, fmt.Errorf("%w: a control character in header %q", ErrMalformed, name)
		}
		switch {
		case equalFold(name, "x-aws-ec2-metadata-token"):
			if r.HasToken {
				return r, 0, fmt.Errorf("%w: two tokens", ErrMalformed)
			}
			r.Token, r.HasToken = string(value), true
		case equalFold(name, "x-aws-ec2-metadata-token-ttl-seconds"):
			if r.HasTTL {
				return r, 0, fmt.Errorf("%w: two token lifetimes", ErrMalformed)
			}
			r.TTL, r.HasTTL = string(value), true
		case equalFold(name, "x-forwarded-for"):
			r.ForwardedFor = true
		case equalFold(name, "content-length"):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 || (hasLength && n != r.ContentLength) {
				return r, 0, fmt.Errorf("%w: Content-Length %q", ErrMalformed, value)
			}
			if n > MaxBody {
				return r, 0, fmt.Errorf("%w: a body of %d bytes", ErrTooLarge, n)
			}
			r.ContentLength, hasLength = n, true
		case equalFold(name, "transfer-encoding"):
			// No IMDS call has a body; a chunked one would have to be
			// decoded to find the next request.
			return r, 0, fmt.Errorf("%w: Transfer-Encoding", ErrMalformed)
		case equalFold(name, "connection"):
			for _, o := range bytes.Split(value, []byte(",")) {
				o = bytes.Trim(o, " \t")
				if equalFold(o, "close") {
					r.Close = true
				} else if equalFold(o, "keep-alive") {
					keepAlive = true
				}
			}
		}
	}
	if http10 && !keepAlive {
		r.Close = true
	}
	n := end + sep + r.ContentLength
	if len(b) < n {
		return r, 0, ErrIncomplete
	}
	return r, n, nil
}

// requestLine parses "METHOD SP target SP HTTP/1.x" and reports HTTP/1.0.
func (r *Request) requestLine(l []byte) (http10 bool, err error) {
	parts := bytes.Split(l, []byte(" "))
	if len(parts) != 3 || !isToken(parts[0]) {
		return false, fmt.Errorf("%w: request line", ErrMalformed)
	}
	switch string(parts[2]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		http10 = true
	default:
		return false, fmt.Errorf("%w: version %q", ErrMalformed, parts[2])
	}
	target := parts[1]
	if len(target) == 0 || target[0] != '/' {
		// Absolute-form targets are for proxies; the metadata service
		// is nobody's proxy.
		return false, fmt.Errorf("%w: target %q", ErrMalformed, target)
	}
	if q := bytes.IndexAny(target, "?#"); q >= 0 {
		target = target[:q]
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return false, fmt.Errorf("%w: target", ErrMalformed)
		}
	}
	r.Method, r.Path = string(parts[0]), string(target)
	return http10, nil
}

func trimCR(l []byte) []byte {
	if len(l) > 0 && l[len(l)-1] == '\r' {
		return l[:len(l)-1]
	}
	return l
}

// isToken reports whether b is an RFC 9110 token (a method or a header
// name).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isFieldValue refuses control characters other than a tab.
func isFieldValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// equalFold compares b with a lower-case ASCII s, ignoring b's case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
