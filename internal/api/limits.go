package api

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bounds what a client can hold of the server before and after it
// is authenticated. Zero fields take the defaults below; the connection
// limits apply only where Serve is given them (the network listener: the
// unix socket admits root alone).
type Limits struct {
	// MaxConns bounds open connections; Accept waits for a free slot.
	MaxConns int
	// MaxConnsPerIP bounds the open connections of one source address;
	// one more is closed as soon as it is accepted.
	MaxConnsPerIP int
	// BodyTimeout is how long a request body may take to arrive. Bodies
	// are read before the signature is checked, so this is what an
	// unauthenticated client can hold a connection for.
	BodyTimeout time.Duration
	// MinUploadRate (bytes/s) extends BodyTimeout for blob uploads, whose
	// body is read after authentication and may be large.
	MinUploadRate int64
	// WriteTimeout bounds each write of a response, so a client that
	// stops reading cannot hold a handler. Long polls and console follow
	// wait as long as they like between writes.
	WriteTimeout time.Duration
}

// Default limits.
const (
	DefaultMaxConns      = 1024
	DefaultMaxConnsPerIP = 64
	DefaultBodyTimeout   = 20 * time.Second
	DefaultMinUploadRate = 32 << 10
	DefaultWriteTimeout  = 30 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = DefaultBodyTimeout
	}
	if l.MinUploadRate <= 0 {
		l.MinUploadRate = DefaultMinUploadRate
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	return l
}

// withDeadlines gives every request its deadlines: the body must arrive
// within BodyTimeout (a blob upload at MinUploadRate), and each write of
// the response must complete within WriteTimeout. The read deadline is
// lifted once the body is read: net/http then reads in the background to
// see the client go away, and a deadline there would cancel a long
// request that is still working.
func withDeadlines(next http.Handler, lim Limits) http.Handler {
	lim = lim.withDefaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// A deadline set by the previous request on this connection
		// must not cut this one short.
		_ = rc.SetWriteDeadline(time.Time{})
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			b := &deadlineBody{rc: rc, body: r.Body, start: time.Now(), grace: lim.BodyTimeout}
			if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/blobs/") {
				b.rate = lim.MinUploadRate
			}
			b.extend()
			r.Body = b
		}
		next.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, timeout: lim.WriteTimeout}, r)
	})
}

// deadlineBody reads a request body under a read deadline: start+grace,
// plus the time the bytes read so far are allowed at rate.
type deadlineBody struct {
	rc    *http.ResponseController
	body  io.ReadCloser
	start time.Time
	grace time.Duration
	rate  int64 // bytes/s; 0: the body has grace and no more
	n     int64
	done  bool
}

func (b *deadlineBody) extend() {
	d := b.grace
	if b.rate > 0 {
		d += time.Duration(float64(b.n) / float64(b.rate) * float64(time.Second))
	}
	_ = b.rc.SetReadDeadline(b.start.Add(d))
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF && !b.done:
		// Only a body read to its end lifts the deadline: after a
		// timeout net/http still drains the body, and must not wait.
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case n > 0 && b.rate > 0:
		b.extend()
	}
	return n, err
}

func (b *deadlineBody) Close() error { return b.body.Close() }

// deadlineWriter gives each write of the response WriteTimeout.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) arm() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout)) }

func (w *deadlineWriter) WriteHeader(code int) {
	w.arm()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.arm()
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher for streaming handlers (console follow).
func (w *deadlineWriter) Flush() {
	w.arm()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// limitListener bounds the connections a listener has open, in total
// (Accept waits) and per source address (the excess is closed at once).
type limitListener struct {
	net.Listener
	slots chan struct{} // one token per open connection; nil: no total bound
	perIP int           // 0: no bound
	done  chan struct{}
	once  sync.Once

	mu   sync.Mutex
	byIP map[string]int

	refused atomic.Uint64 // connections closed for their address's bound
}

// LimitListener applies lim's connection bounds to l.
func LimitListener(l net.Listener, lim Limits) net.Listener {
	ll := &limitListener{Listener: l, perIP: lim.MaxConnsPerIP, done: make(chan struct{}), byIP: map[string]int{}}
	if lim.MaxConns > 0 {
		ll.slots = make(chan struct{}, lim.MaxConns)
	}
	return ll
}

func (l *limitListener) Accept() (net.Conn, error) {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.release()
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		if l.perIP > 0 && l.byIP[ip] >= l.perIP {
			l.mu.Unlock()
			l.refused.Add(1)
			c.Close()
			continue
		}
		l.byIP[ip]++
		l.mu.Unlock()
		return &limitConn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *limitListener) release() {
	if l.slots != nil {
		<-l.slots
	}
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func remoteIP(c net.Conn) string {
	a := c.RemoteAddr()
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitConn gives its slot back when closed (once, however many times
// net/http and crypto/tls close it).
type limitConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.byIP[c.ip]--; c.l.byIP[c.ip] <= 0 {
			delete(c.l.byIP, c.ip)
		}
		c.l.mu.Unlock()
		c.l.release()
	})
	return err
}
