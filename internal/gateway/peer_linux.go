package gateway

import (
	"fmt"
	"net"

	"github.com/azote/azote/internal/proc"
)

// rootPeer allows a unix-socket connection only from uid 0, read from the
// kernel with SO_PEERCRED (the caller cannot forge it), and returns the
// peer's pid for the trail.
func rootPeer(c net.Conn) (int32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix socket connection")
	}
	cred, err := proc.PeerCred(uc)
	if err != nil {
		return 0, err
	}
	if cred.Uid != 0 {
		return 0, fmt.Errorf("uid %d may not use the local socket: root only", cred.Uid)
	}
	return cred.Pid, nil
}
