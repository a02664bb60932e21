package proc

import (
	"net"
	"os"
)

// ListenFile binds a unix socket at path (mode 0600), listens on it and
// returns its file, for azoted to donate to a process it starts (an engine,
// a card). Whatever was at path is removed first; closing the file does not
// remove the socket.
func ListenFile(path string) (*os.File, error) {
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	return l.File()
}
