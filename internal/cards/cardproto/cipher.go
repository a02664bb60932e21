package cardproto

import "errors"

// ErrNoAESNI says this host's cards cannot encrypt volumes: its CPU has
// no AES-NI (or the build has no assembly), and the only other AES there
// is table-based, not constant-time. It is xts.ErrNoAESNI's verdict,
// given here so that azoted can refuse an encrypted volume up front
// without linking the cipher (azoted never handles volume plaintext).
var ErrNoAESNI = errors.New("xts: this CPU has no AES-NI, and the only other AES here is table-based (not constant-time): " +
	"a tenant sharing the CPU could learn volume keys through cache timing, so encryption is refused on this host")

// EncryptionAvailable reports whether a card on this host can serve an
// encrypted volume: nil when xts.Available would say so, else ErrNoAESNI.
// A test holds the two to the same answer.
func EncryptionAvailable() error {
	if !hasAESNI {
		return ErrNoAESNI
	}
	return nil
}
