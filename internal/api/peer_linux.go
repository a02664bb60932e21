package api

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// RootPeerOnly allows a unix-socket connection only from uid 0, read from
// the kernel with SO_PEERCRED (the caller cannot forge it).
func RootPeerOnly(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	if cred.Uid != 0 {
		return fmt.Errorf("uid %d may not use the local socket: root only", cred.Uid)
	}
	return nil
}
