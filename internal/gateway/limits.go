package gateway

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bounds what a client can hold of the server before and after it
// is authenticated. Zero fields take the defaults below; the connection
// limits apply only where Serve is given them (the network listener: the
// unix socket admits root alone).
type Limits struct {
	// MaxConns bounds open connections: one more takes the place of the
	// connection idle the longest, or is closed if none is idle.
	MaxConns int
	// MaxConnsPerIP bounds the open connections of one source: an IPv4
	// address, or an IPv6 /64; one more is closed as soon as it is
	// accepted.
	MaxConnsPerIP int
	// BodyTimeout is how long a request body may take to arrive. Bodies
	// are read before the signature is checked, so this is what an
	// unauthenticated client can hold a connection for.
	BodyTimeout time.Duration
	// MinUploadRate (bytes/s) extends BodyTimeout for uploads (blobs,
	// volume imports: rawUpload), whose
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
	DefaultMaxConnsPerIP = 256
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
			if rawUpload(r) {
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

// limitListener bounds the connections a listener has open, in total and
// per source (an address; an IPv6 client's /64, as refusals count them:
// one host commonly holds a whole /64). A connection past its source's
// bound takes the place of that source's connection idle the longest; if
// none of them is idle it is closed as soon as it is accepted. One past the total bound
// takes the place of the connection idle the longest (an HTTP keep-alive
// or HTTP/2 connection between requests), which is closed; if none is
// idle it is closed itself. Accept never waits for a slot, so clients are
// told at once instead of waiting in the kernel's backlog.
type limitListener struct {
	net.Listener
	max   int // 0: no total bound
	perIP int // 0: no bound per source

	mu       sync.Mutex
	bySource map[string]int
	conns    map[*limitConn]*connInfo

	refused atomic.Uint64 // connections closed for a bound
	evicted atomic.Uint64 // idle connections closed to make room
}

// connInfo is what the server last said of a connection.
type connInfo struct {
	state http.ConnState
	since time.Time
}

// LimitListener applies lim's connection bounds to l.
func LimitListener(l net.Listener, lim Limits) net.Listener { return newLimitListener(l, lim) }

func newLimitListener(l net.Listener, lim Limits) *limitListener {
	return &limitListener{Listener: l, max: lim.MaxConns, perIP: lim.MaxConnsPerIP,
		bySource: map[string]int{}, conns: map[*limitConn]*connInfo{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceKey(remoteIP(c))
		l.mu.Lock()
		// Past a bound, the connection idle the longest (of the same
		// source for the per-source bound: a client's pool may dial one
		// more than it keeps busy) makes room; with none idle, the new
		// one is refused.
		if (l.perIP > 0 && l.bySource[src] >= l.perIP && !l.evictIdlest(src)) ||
			(l.max > 0 && len(l.conns) >= l.max && !l.evictIdlest("")) {
			l.mu.Unlock()
			l.refused.Add(1)
			c.Close()
			continue
		}
		lc := &limitConn{Conn: c, l: l, src: src}
		l.conns[lc] = &connInfo{state: http.StateNew, since: time.Now()}
		l.bySource[src]++
		l.mu.Unlock()
		return lc, nil
	}
}

// evictIdlest closes the connection of src ("" for any) idle the longest,
// reporting false if none is idle. l.mu is held, and held again on return.
func (l *limitListener) evictIdlest(src string) bool {
	victim := l.idlest(src)
	if victim == nil {
		return false
	}
	// Forget it now: its Close, below or by the server, gives back
	// nothing more.
	l.forget(victim)
	l.mu.Unlock()
	l.evicted.Add(1)
	victim.Close()
	l.mu.Lock()
	return true
}

// idlest is the connection idle the longest, of source src ("" for any),
// nil if none is idle. l.mu is held.
func (l *limitListener) idlest(src string) *limitConn {
	var best *limitConn
	var since time.Time
	for c, info := range l.conns {
		if src != "" && c.src != src {
			continue
		}
		if info.state == http.StateIdle && (best == nil || info.since.Before(since)) {
			best, since = c, info.since
		}
	}
	return best
}

// forget drops c from the counts, once. l.mu is held.
func (l *limitListener) forget(c *limitConn) {
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if l.bySource[c.src]--; l.bySource[c.src] <= 0 {
		delete(l.bySource, c.src)
	}
}

// connState is the server's ConnState hook: it tells which connections
// are idle.
func (l *limitListener) connState(c net.Conn, s http.ConnState) {
	if u, ok := c.(interface{ NetConn() net.Conn }); ok { // crypto/tls
		c = u.NetConn()
	}
	lc, ok := c.(*limitConn)
	if !ok {
		return
	}
	l.mu.Lock()
	if info := l.conns[lc]; info != nil {
		info.state, info.since = s, time.Now()
	}
	l.mu.Unlock()
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

// limitConn gives its place back when closed (once, however many times
// net/http and crypto/tls close it).
type limitConn struct {
	net.Conn
	l   *limitListener
	src string
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	c.l.forget(c)
	c.l.mu.Unlock()
	return err
}
