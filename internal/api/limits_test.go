package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveLimited serves h over TCP on 127.0.0.1 with lim until the test ends.
func serveLimited(t *testing.T, h http.Handler, lim Limits) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Serve(ctx, l, h, nil, lim)
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
	addr := serveLimited(t, readsBody, Limits{BodyTimeout: 300 * time.Millisecond})
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
	addr := serveLimited(t, h, Limits{BodyTimeout: 200 * time.Millisecond})
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
	addr := serveLimited(t, readsBody, Limits{BodyTimeout: 300 * time.Millisecond, MinUploadRate: 1000})
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
	addr := serveLimited(t, h, Limits{WriteTimeout: 300 * time.Millisecond})
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

// TestConnectionsPerIP: one address cannot open more than MaxConnsPerIP
// connections; closing one frees its place.
func TestConnectionsPerIP(t *testing.T) {
	addr := serveLimited(t, readsBody, Limits{MaxConnsPerIP: 2})
	get := func(c net.Conn) error {
		fmt.Fprintf(c, "GET /v1/host HTTP/1.1\r\nHost: h\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := get(c); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		held = append(held, c)
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if err := get(third); err == nil {
		t.Fatal("a third connection from one address was served with MaxConnsPerIP 2")
	}
	held[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		err = get(c)
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one of two closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMaxConns: past MaxConns, a connection waits to be accepted until
// another closes.
func TestMaxConns(t *testing.T) {
	addr := serveLimited(t, readsBody, Limits{MaxConns: 1})
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(first, "GET /v1/host HTTP/1.1\r\nHost: h\r\n\r\n")
	first.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", addr) // the kernel completes the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	fmt.Fprintf(second, "GET /v1/host HTTP/1.1\r\nHost: h\r\n\r\n")
	second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	br := bufio.NewReader(second)
	if _, err := http.ReadResponse(br, nil); err == nil {
		t.Fatal("a second connection was served with MaxConns 1")
	}
	first.Close()
	second.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatalf("second connection after the first closed: %v", err)
	}
}
