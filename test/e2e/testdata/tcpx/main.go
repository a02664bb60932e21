// Command tcpx is the network tests' TCP stream, built static and put in
// a test image: `tcpx recv PORT` takes one stream and answers with its
// length and SHA-256; `tcpx send HOST:PORT BYTES` sends that many random
// bytes and prints both sides' length and SHA-256, so the test compares
// what left one guest with what reached the other.
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
		fmt.Fprintln(os.Stderr, "usage: tcpx recv PORT | tcpx send HOST:PORT BYTES")
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
		err = send(os.Args[2], n)
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

func send(addr string, n int64) error {
	c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	h := sha256.New()
	start := time.Now()
	if _, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.Reader, n)); err != nil {
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
