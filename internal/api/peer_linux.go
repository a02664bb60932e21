package api

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// rootPeer allows a unix-socket connection only from uid 0, read from the
// kernel with SO_PEERCRED (the caller cannot forge it), and returns the
// peer's pid for the trail.
func rootPeer(c net.Conn) (int32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	if cred.Uid != 0 {
		return 0, fmt.Errorf("uid %d may not use the local socket: root only", cred.Uid)
	}
	return cred.Pid, nil
}
