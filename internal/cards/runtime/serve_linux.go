package runtime

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/proc"
)

// ServeMetrics answers each connection with snapshot(), as JSON; azoted
// checks and renders it (cardproto's metrics schema).
func ServeMetrics(l *net.UnixListener, snapshot func() any) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		json.NewEncoder(c).Encode(snapshot())
		c.Close()
	}
}

// ServeKey answers a connection with the volume key only when its peer is
// azoted: uid 0 (SO_PEERCRED) that first writes the escrow secret azoted
// gave this card at start and can derive again after a restart (from the
// host key). A pid cannot tell azoted: a restarted azoted has a new one,
// and the card, confined, cannot look at /proc to learn it. Any other
// peer, a root process included, gets nothing. The socket sits in the
// instance's directory, root's, bound by azoted.
func ServeKey(l *net.UnixListener, key, secret []byte, log *slog.Logger) {
	var got [cardproto.EscrowSecretBytes]byte
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		uid, err := peerUID(c)
		switch {
		case err != nil || uid != 0:
			log.Warn("key request refused: peer is not root", "uid", uid, "err", err)
		case len(secret) != len(got):
			log.Warn("key request refused: no escrow secret")
		default:
			_, err := io.ReadFull(c, got[:])
			if err != nil || subtle.ConstantTimeCompare(got[:], secret) != 1 {
				log.Warn("key request refused: the peer did not prove it is azoted", "err", err)
			} else {
				c.Write(key)
			}
			clear(got[:])
		}
		c.Close()
	}
}

func peerUID(c *net.UnixConn) (uint32, error) {
	cred, err := proc.PeerCred(c)
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}
