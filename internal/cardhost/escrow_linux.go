package cardhost

import (
	"io"
	"net"
	"time"

	"github.com/azote/azote/internal/keymem"
)

// RecoverKey asks the live instance-store card listening on sock for the
// key of its launch (keyBytes long), which a restarted azoted no longer
// holds. azoted proves itself to the card with the escrow secret of that
// volume. The key comes back in locked memory the caller frees.
func RecoverKey(sock string, secret *keymem.Buf, keyBytes int) (*keymem.Buf, error) {
	conn, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(secret.Bytes()); err != nil {
		return nil, err
	}
	key, err := keymem.New(keyBytes)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(conn, key.Bytes()); err != nil {
		key.Free()
		return nil, err
	}
	return key, nil
}
