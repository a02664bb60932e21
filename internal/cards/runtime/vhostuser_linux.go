package runtime

import (
	"errors"
	"log/slog"
	"net"
	"os"

	"github.com/azote/azote/internal/vhostuser"
)

// ServeVhostUser accepts frontends on l and serves b to one at a time until the
// listener fails. A frontend that disconnects (the engine restarting, or
// QEMU reconnecting after the card was restarted) is followed by the next
// one; ring state comes from the frontend, and from the inflight area it
// hands back, each time. The backend is made before the card's system-call
// filter is installed (it may create an inflight memfd then).
func ServeVhostUser(b *vhostuser.Backend, l *net.UnixListener, log *slog.Logger) error {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		log.Info("frontend connected")
		if err := b.Serve(c); err != nil {
			log.Warn("frontend connection ended", "err", err)
		} else {
			log.Info("frontend disconnected")
		}
	}
}

// ListenVhostUser binds the vhost-user socket with mode 0600.
func ListenVhostUser(path string) (*net.UnixListener, error) {
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
