package vhostuser

import (
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// conn reads and writes vhost-user messages on a unix stream socket.
type conn struct {
	c   *net.UnixConn
	hdr [HeaderSize]byte
	oob []byte
}

func newConn(c *net.UnixConn) *conn {
	return &conn{c: c, oob: make([]byte, unix.CmsgSpace(MaxFDs*4))}
}

// read receives one message. File descriptors arrive with the header; any
// descriptor in a message that fails validation is closed here.
func (c *conn) read() (*Message, error) {
	n, oobn, _, _, err := c.c.ReadMsgUnix(c.hdr[:], c.oob)
	if err != nil {
		return nil, err
	}
	fds, ferr := parseRights(c.oob[:oobn])
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if ferr != nil {
		closeAll()
		return nil, ferr
	}
	if n == 0 {
		closeAll()
		return nil, io.EOF
	}
	if n < HeaderSize {
		if _, err := io.ReadFull(c.c, c.hdr[n:]); err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: short header: %v", ErrMalformed, err)
		}
	}
	req, flags, size, err := parseHeader(c.hdr[:])
	if err != nil {
		closeAll()
		return nil, err
	}
	m := &Message{Request: req, Flags: flags, FDs: fds}
	if size > 0 {
		m.Payload = make([]byte, size)
		if _, err := io.ReadFull(c.c, m.Payload); err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: short payload: %v", ErrMalformed, err)
		}
	}
	return m, nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %v", ErrMalformed, err)
	}
	var fds []int
	for _, m := range msgs {
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, r...)
	}
	if len(fds) > MaxFDs {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("%w: %d file descriptors", ErrMalformed, len(fds))
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	return fds, nil
}

// write sends one message with optional file descriptors.
func (c *conn) write(req Request, flags uint32, payload []byte, fds []int) error {
	b := make([]byte, HeaderSize+len(payload))
	putHeader(b, req, flags, uint32(len(payload)))
	copy(b[HeaderSize:], payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := c.c.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("vhostuser: short write of %v", req)
	}
	return nil
}

func (c *conn) close() error { return c.c.Close() }
