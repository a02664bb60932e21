package instances

import (
	"crypto/hmac"
	"crypto/sha256"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/keymem"
)

// escrowSecret is what azoted proves it is azoted with to the
// instance-store card of volID in instID: a MAC under the escrow key, so
// that nothing is stored and a restarted azoted knows it again. It is
// written into a locked buffer the caller frees.
func (s *Service) escrowSecret(instID, volID string) (*keymem.Buf, error) {
	b, err := keymem.New(cardproto.EscrowSecretBytes)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, s.cfg.EscrowKey.Bytes())
	m.Write([]byte("instance-store key escrow\x00" + instID + "\x00" + volID))
	m.Sum(b.Bytes()[:0])
	return b, nil
}
