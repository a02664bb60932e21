package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// serveLimited serves h over TCP on 127.0.0.1 (over TLS with tlsCfg if it
// is not nil) with lim until the test ends.
func serveLimited(t *testing.T, h http.Handler, tlsCfg *tls.Config, lim Limits) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Serve(ctx, l, h, tlsCfg, lim)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return l.Addr().String()
}

// readsBody answers 200 once it has read the whole body, as the gateway
// does before it checks a signature.
var readsBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		return
	}
	w.WriteHeader(http.StatusOK)
})

// getOn sends GET /v1/host on c and reads the answer, for 3 s at most.
func getOn(c net.Conn) error {
	fmt.Fprintf(c, "GET /v1/host HTTP/1.1\r\nHost: h\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// closedWithin reports whether the server ends c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF: the server closed it; a timeout is an error
}

// TestSlowBodyIsCutOff: a client that sends headers and then trickles (or
// stops sending) its body no longer holds the connection past
// BodyTimeout; before per-request deadlines it held it forever, before
// any authentication.
func TestSlowBodyIsCutOff(t *testing.T) {
	addr := serveLimited(t, readsBody, nil, Limits{BodyTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/iam/ListUsers HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\nx")
	if !closedWithin(c, 3*time.Second) {
		t.Fatal("connection with a stalled body still open 3s after a 300ms body timeout")
	}
}

// TestBodyDeadlineLiftedOnceRead: a request whose body came in time may
// work longer than BodyTimeout without being cancelled (net/http's
// background read must not inherit the body's deadline).
func TestBodyDeadlineLiftedOnceRead(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-time.After(time.Second):
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
			t.Error("request cancelled after its body was read")
		}
	})
	addr := serveLimited(t, h, nil, Limits{BodyTimeout: 200 * time.Millisecond})
	resp, err := http.Post("http://"+addr+"/v1/instances", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The same connection serves a second long request: no deadline of
	// the first is left on it.
	resp, err = http.Post("http://"+addr+"/v1/instances", "application/json", strings.NewReader(`{"a":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestUploadGetsMinimumRate: a blob upload arriving steadily above
// MinUploadRate may take longer than BodyTimeout.
func TestUploadGetsMinimumRate(t *testing.T) {
	addr := serveLimited(t, readsBody, nil, Limits{BodyTimeout: 300 * time.Millisecond, MinUploadRate: 1000})
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 8; i++ { // 8 KiB over ~800ms: 10 KB/s
			pw.Write(make([]byte, 1024))
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PUT", "http://"+addr+"/v1/blobs/abc", pr)
	req.ContentLength = 8 << 10
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestSlowReaderCutOff: a client that stops reading a response does not
// hold the handler past WriteTimeout.
func TestSlowReaderCutOff(t *testing.T) {
	finished := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for i := 0; i < 1<<14; i++ { // 1 GiB: far more than socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				finished <- err
				return
			}
		}
		finished <- nil
	})
	addr := serveLimited(t, h, nil, Limits{WriteTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/instances/i-1/console HTTP/1.1\r\nHost: h\r\n\r\n")
	select {
	case err := <-finished:
		if err == nil {
			t.Fatal("the handler wrote 1 GiB to a client that reads nothing")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler still blocked writing to a client that stopped reading")
	}
}

// TestConnectionsPerIP: one address holds at most MaxConnsPerIP
// connections. Past it, a new connection is closed at once while all of
// that address's connections are busy, and takes the place of its
// idlest one otherwise (a client pool may dial one more than it keeps
// busy); the busy ones are never touched.
func TestConnectionsPerIP(t *testing.T) {
	addr := serveLimited(t, readsBody, nil, Limits{MaxConnsPerIP: 2})
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A request whose body is still coming: the connection is active.
		fmt.Fprintf(c, "POST /v1/host HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nx")
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond)
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if !closedWithin(third, 3*time.Second) {
		t.Fatal("a third connection from one address was kept with MaxConnsPerIP 2 and both others busy")
	}
	finish := func(c net.Conn) error {
		fmt.Fprintf(c, "x")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := finish(held[0]); err != nil {
		t.Fatalf("a busy connection: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // held[0] is idle now
	fourth, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fourth.Close()
	if err := getOn(fourth); err != nil {
		t.Fatalf("a connection past the bound with one of the address's idle: %v", err)
	}
	if !closedWithin(held[0], 3*time.Second) {
		t.Fatal("the address's idle connection was not closed to make room")
	}
	if err := finish(held[1]); err != nil {
		t.Fatalf("the other busy connection: %v", err)
	}
}

// TestMaxConnsClosesIdle: past MaxConns, a new connection takes the
// place of an idle keep-alive connection, which is closed; it no longer
// waits in the backlog for as long as the idle one stays open.
func TestMaxConnsClosesIdle(t *testing.T) {
	addr := serveLimited(t, readsBody, nil, Limits{MaxConns: 1})
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := getOn(first); err != nil {
		t.Fatal(err)
	}
	// first is now an idle keep-alive connection.
	time.Sleep(50 * time.Millisecond)
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := getOn(second); err != nil {
		t.Fatalf("second connection with MaxConns 1 and the first idle: %v", err)
	}
	if !closedWithin(first, 3*time.Second) {
		t.Fatal("the idle connection was not closed to make room")
	}
}

// TestMaxConnsBusy: past MaxConns with no connection idle, the new one is
// closed at once; the busy one is not touched.
func TestMaxConnsBusy(t *testing.T) {
	addr := serveLimited(t, readsBody, nil, Limits{MaxConns: 1})
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// A request whose body is still coming: the connection is active.
	fmt.Fprintf(first, "POST /v1/host HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nx")
	time.Sleep(100 * time.Millisecond)
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if !closedWithin(second, 3*time.Second) {
		t.Fatal("a connection past MaxConns was kept waiting")
	}
	fmt.Fprintf(first, "x")
	first.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil {
		t.Fatalf("the busy connection: %v", err)
	}
}

// fakeAddrListener hands out one end of a pipe per address sent on it,
// with that remote address.
type fakeAddrListener struct {
	conns chan net.Conn
	done  chan struct{}
}

type addrConn struct {
	net.Conn
	remote net.Addr
	closed chan struct{}
	once   sync.Once
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }
func (c *addrConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (l *fakeAddrListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *fakeAddrListener) Close() error   { close(l.done); return nil }
func (l *fakeAddrListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestConnectionsPerIPv6Prefix: the per-source bound counts an IPv6
// client's whole /64, as refusals do: before, each of its 2^64 addresses
// had a bound of its own and one /64 could take every connection.
func TestConnectionsPerIPv6Prefix(t *testing.T) {
	fl := &fakeAddrListener{conns: make(chan net.Conn), done: make(chan struct{})}
	l := LimitListener(fl, Limits{MaxConnsPerIP: 2})
	defer l.Close()
	dial := func(ip string) *addrConn {
		a, _ := net.Pipe()
		t.Cleanup(func() { a.Close() })
		c := &addrConn{Conn: a, remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}, closed: make(chan struct{})}
		fl.conns <- c
		return c
	}
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"} {
		dial(ip)
		select {
		case <-accepted:
		case <-time.After(3 * time.Second):
			t.Fatalf("%s not accepted", ip)
		}
	}
	third := dial("2001:db8:1:2:abcd::3") // same /64
	select {
	case <-third.closed:
	case c := <-accepted:
		t.Fatalf("a third connection from one /64 (%v) was accepted with MaxConnsPerIP 2", c.RemoteAddr())
	case <-time.After(3 * time.Second):
		t.Fatal("a third connection from one /64 neither accepted nor closed")
	}
	dial("2001:db8:1:3::1") // another /64
	select {
	case <-accepted:
	case <-time.After(3 * time.Second):
		t.Fatal("a connection from another /64 was not accepted")
	}
}

func TestSourceKey(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2::1":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9": "2001:db8:1:2::/64",
		"::1":                  "::/64",
	} {
		if got := sourceKey(ip); got != want {
			t.Errorf("sourceKey(%s) = %s, want %s", ip, got, want)
		}
	}
}

// TestMaxConnsClosesIdleTLS: the same over HTTPS, where the server
// reports the state of the TLS connection around the counted one, also
// for a client that offers HTTP/2 (it is answered in HTTP/1.1: see
// Serve).
func TestMaxConnsClosesIdleTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveLimited(t, readsBody, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, Limits{MaxConns: 1})
	url := "https://" + addr + "/v1/host"
	for _, h2 := range []bool{false, true} {
		var clients []*http.Client
		for i := 0; i < 2; i++ {
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
			defer tr.CloseIdleConnections()
			clients = append(clients, &http.Client{Transport: tr, Timeout: 3 * time.Second})
		}
		for i, c := range clients {
			resp, err := c.Get(url)
			if err != nil {
				t.Fatalf("offering HTTP/2 %v, client %d with MaxConns 1 and the other idle: %v", h2, i+1, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 1 {
				t.Fatalf("offering HTTP/2 %v, answered over %s", h2, resp.Proto)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, c := range clients {
			c.Transport.(*http.Transport).CloseIdleConnections()
		}
	}
}
