// Command tcpx is the network tests' TCP stream, built static and put in
// a test image: `tcpx recv PORT` takes one stream and answers with its
// length and SHA-256; `tcpx send HOST:PORT BYTES` sends that many random
// bytes and prints both sides' length and SHA-256, so the test compares
// what left one guest with what reached the other. `tcpx send HOST:PORT
// BYTES PATTERN` sends PATTERN followed by a counter, over and over, in
// place of random bytes: a plaintext a capture of the underlay must never
// hold.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: tcpx recv PORT | tcpx send HOST:PORT BYTES [PATTERN]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "recv":
		err = recv(os.Args[2])
	case "send":
		n, perr := strconv.ParseInt(os.Args[3], 10, 64)
		if perr != nil {
			err = perr
			break
		}
		var src io.Reader = rand.Reader
		if len(os.Args) > 4 {
			src = &patterned{prefix: os.Args[4]}
		}
		err = send(os.Args[2], n, src)
	default:
		err = fmt.Errorf("unknown verb %q", os.Args[1])
	}
	if err != nil {
		fmt.Println("tcpx: error:", err)
		os.Exit(1)
	}
}

func recv(port string) error {
	l, err := net.Listen("tcp4", ":"+port)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(h, c)
		sum := fmt.Sprintf("%d %x", n, h.Sum(nil))
		if err != nil {
			sum += " error " + err.Error()
		}
		fmt.Println("tcpx: received", sum)
		fmt.Fprintln(c, sum)
		c.Close()
	}
}

// patterned reads as prefix and a counter, over and over.
type patterned struct {
	prefix string
	n      int
	buf    []byte
}

func (p *patterned) Read(b []byte) (int, error) {
	k := 0
	for k < len(b) {
		if len(p.buf) == 0 {
			p.buf = fmt.Appendf(p.buf[:0], "%s%08d|", p.prefix, p.n)
			p.n++
		}
		c := copy(b[k:], p.buf)
		p.buf = p.buf[c:]
		k += c
	}
	return k, nil
}

func send(addr string, n int64, src io.Reader) error {
	c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	h := sha256.New()
	start := time.Now()
	if _, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(src, n)); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(io.LimitReader(c, 256))
	if err != nil {
		return err
	}
	fmt.Printf("tcpx: sent %d %x in %v; peer %s", n, h.Sum(nil), time.Since(start).Round(time.Millisecond), reply)
	return nil
}
