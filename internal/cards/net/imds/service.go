package imds

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
)

// Token lifetimes EC2 accepts, in seconds.
const (
	MinTokenTTL = 1
	MaxTokenTTL = 21600
)

// Default throttle of one interface: EC2 counts 1024 packets per second
// per interface to its link-local services; a request here is at least
// one packet.
const (
	DefaultRate  = 1024
	DefaultBurst = 1024
)

// Outcome is how a request was answered, the label it is counted under.
type Outcome uint8

// Outcomes, in the order of cardproto.MetadataOutcomes (which names them).
const (
	OK               Outcome = iota // 200
	BadRequest                      // 400: a bad token request, or a malformed one
	Unauthorized                    // 401: no token, or not a valid one
	Forbidden                       // 403: a token request with X-Forwarded-For
	NotFound                        // 404
	MethodNotAllowed                // 405
	Throttled                       // 429
	numOutcomes
)

// The service counts exactly the outcomes azoted renders: this does not
// compile when the two lists differ in length.
var _ [len(cardproto.MetadataOutcomes)]struct{} = [numOutcomes]struct{}{}

// String returns the outcome's metric label.
func (o Outcome) String() string {
	if o >= numOutcomes {
		return "unknown"
	}
	return cardproto.MetadataOutcomes[o]
}

var statusOf = [numOutcomes]int{200, 400, 401, 403, 404, 405, 429}

// Service answers requests for one interface: its data (swapped whole
// when azoted sends new metadata), its tokens and its throttle.
type Service struct {
	data atomic.Pointer[Data]
	// key signs tokens; made at start, never leaves the card: a
	// restarted card's guests ask for new tokens, as after an EC2
	// instance stop.
	key  [32]byte
	bind []byte // the interface a token is valid on: MAC and id
	now  func() time.Time

	mu     sync.Mutex
	tokens float64 // the throttle's bucket
	last   time.Time
	rate   float64
	burst  float64

	counts [numOutcomes]atomic.Uint64
}

// NewService makes the service of the interface with this MAC and id; it
// answers nothing until SetData. rate and burst bound the requests per
// second (0 for the defaults).
func NewService(mac, interfaceID string, rate, burst int) (*Service, error) {
	if rate <= 0 {
		rate = DefaultRate
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	s := &Service{now: time.Now, rate: float64(rate), burst: float64(burst), tokens: float64(burst)}
	if _, err := rand.Read(s.key[:]); err != nil {
		return nil, fmt.Errorf("imds: token key: %w", err)
	}
	s.bind = []byte(mac + "\x00" + interfaceID)
	s.last = s.now()
	return s, nil
}

// SetData swaps in new metadata; nil turns the service off.
func (s *Service) SetData(d *Data) { s.data.Store(d) }

// Data returns what the service answers from, or nil.
func (s *Service) Data() *Data { return s.data.Load() }

// Counts returns the requests answered by outcome.
func (s *Service) Counts() [numOutcomes]uint64 {
	var c [numOutcomes]uint64
	for i := range c {
		c[i] = s.counts[i].Load()
	}
	return c
}

// Response is an answer to one request.
type Response struct {
	Status  int
	Outcome Outcome
	Body    []byte
	TTL     string // the token's lifetime, echoed on a token answer
	Head    bool   // the request was HEAD: no body goes out
}

// Serve answers one parsed request from d.
func (s *Service) Serve(d *Data, r *Request) Response {
	resp := s.serve(d, r)
	resp.Status = statusOf[resp.Outcome]
	if resp.Outcome != OK {
		resp.Body = errorBody(resp.Outcome)
	}
	s.counts[resp.Outcome].Add(1)
	return resp
}

// Malformed counts and makes the answer to a request that did not parse.
func (s *Service) Malformed() Response {
	s.counts[BadRequest].Add(1)
	return Response{Status: 400, Outcome: BadRequest, Body: errorBody(BadRequest)}
}

func (s *Service) serve(d *Data, r *Request) Response {
	if !s.allow() {
		return Response{Outcome: Throttled}
	}
	const tokenPath = "/latest/api/token"
	if r.Method == "PUT" {
		if r.Path != tokenPath {
			return Response{Outcome: MethodNotAllowed}
		}
		if r.ForwardedFor {
			// A token request that went through a proxy: refused, so
			// that an open proxy on the instance cannot get one.
			return Response{Outcome: Forbidden}
		}
		ttl, err := strconv.Atoi(r.TTL)
		if !r.HasTTL || err != nil || ttl < MinTokenTTL || ttl > MaxTokenTTL {
			return Response{Outcome: BadRequest}
		}
		return Response{Outcome: OK, Body: []byte(s.token(time.Duration(ttl) * time.Second)), TTL: strconv.Itoa(ttl)}
	}
	if r.Method != "GET" && r.Method != "HEAD" {
		return Response{Outcome: MethodNotAllowed}
	}
	if r.Path == tokenPath {
		return Response{Outcome: MethodNotAllowed}
	}
	switch {
	case r.HasToken:
		if !s.valid(r.Token) {
			return Response{Outcome: Unauthorized}
		}
	case !d.Optional:
		return Response{Outcome: Unauthorized}
	}
	b, ok := d.lookup(r.Path)
	if !ok {
		return Response{Outcome: NotFound}
	}
	return Response{Outcome: OK, Body: b, Head: r.Method == "HEAD"}
}

// allow takes one request from the throttle's bucket.
func (s *Service) allow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if dt := now.Sub(s.last); dt > 0 {
		s.tokens = min(s.burst, s.tokens+dt.Seconds()*s.rate)
	}
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// A token is its expiry (Unix seconds, 8 bytes) and an HMAC-SHA256 tag
// (the first 24 bytes) over the expiry and the interface, base64url:
// nothing to keep per token, valid on this interface only, until then.
const tokenTagLen = 24

func (s *Service) token(ttl time.Duration) string {
	var b [8 + tokenTagLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(s.now().Add(ttl).Unix()))
	copy(b[8:], s.tag(b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Service) tag(expiry []byte) []byte {
	h := hmac.New(sha256.New, s.key[:])
	h.Write([]byte("azote imds token v1\x00"))
	h.Write(s.bind)
	h.Write(expiry)
	return h.Sum(nil)[:tokenTagLen]
}

func (s *Service) valid(tok string) bool {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 8+tokenTagLen {
		return false
	}
	if !hmac.Equal(b[8:], s.tag(b[:8])) {
		return false
	}
	exp := int64(binary.BigEndian.Uint64(b[:8]))
	return s.now().Unix() < exp
}

// errorBody is the page EC2's metadata service answers an error with.
func errorBody(o Outcome) []byte {
	title := strconv.Itoa(statusOf[o]) + " - " + reasons[o]
	return []byte(`<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
		 "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>` + title + `</title>
 </head>
 <body>
  <h1>` + title + `</h1>
 </body>
</html>
`)
}

var reasons = [numOutcomes]string{"OK", "Bad Request", "Unauthorized", "Forbidden", "Not Found", "Method Not Allowed", "Too Many Requests"}

// AppendResponse appends resp as HTTP/1.1 to b.
func AppendResponse(b []byte, resp *Response, close bool, now time.Time) []byte {
	b = fmt.Appendf(b, "HTTP/1.1 %d %s\r\n", resp.Status, reasons[resp.Outcome])
	ct := "text/plain"
	if resp.Outcome != OK {
		ct = "text/html"
	}
	b = fmt.Appendf(b, "Content-Type: %s\r\n", ct)
	if resp.TTL != "" {
		b = fmt.Appendf(b, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds: %s\r\n", resp.TTL)
	}
	b = fmt.Appendf(b, "Content-Length: %d\r\nDate: %s\r\nServer: EC2ws\r\n", len(resp.Body), now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	if close {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	if !resp.Head {
		b = append(b, resp.Body...)
	}
	return b
}
