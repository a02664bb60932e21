// Package cardproto is the contract between azoted and its cards: what
// crosses the boundary and in which shape. It holds the framing of the
// private channel (a unix socketpair made by azoted, one end inherited by
// the card: messages are a 4-byte little-endian length and a payload), the
// names under which a card inherits its descriptors, each kind's
// configuration, and the metrics schema a card answers with.
//
// For a blk card the first message is its JSON configuration, the second
// its key (raw bytes, possibly empty), the third the escrow secret an
// instance-store card asks of whoever wants its key back (possibly
// empty). A key never travels in argv, the environment or a file, and the
// card reads it straight into locked memory (keymem).
//
// The package holds no policy and opens nothing: both sides import it,
// and it imports nothing of either.
package cardproto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/azote/azote/internal/keymem"
)

// MaxMessage bounds one message.
const MaxMessage = 64 << 10

// ErrTooLarge is returned for a message over MaxMessage.
var ErrTooLarge = errors.New("cardproto: message too large")

// EscrowSecretBytes is the length of an escrow secret.
const EscrowSecretBytes = 32

// Write sends one message: the header, then the payload as it is (it may
// be a key in locked memory, which is not copied).
func Write(w io.Writer, payload []byte) error {
	if len(payload) > MaxMessage {
		return ErrTooLarge
	}
	var h [4]byte
	binary.LittleEndian.PutUint32(h[:], uint32(len(payload)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if len(payload) == 0 {
		return nil
	}
	_, err := w.Write(payload)
	return err
}

func readHeader(r io.Reader) (int, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	n := binary.LittleEndian.Uint32(h[:])
	if n > MaxMessage {
		return 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	return int(n), nil
}

// Read receives one message.
func Read(r io.Reader) ([]byte, error) {
	n, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// ReadSecret receives one message into locked memory; nil for an empty
// message.
func ReadSecret(r io.Reader) (*keymem.Buf, error) {
	n, err := readHeader(r)
	if err != nil || n == 0 {
		return nil, err
	}
	b, err := keymem.New(n)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(r, b.Bytes()); err != nil {
		b.Free()
		return nil, err
	}
	return b, nil
}

// BlkConfig is the configuration azoted sends a blk card.
type BlkConfig struct {
	VolumeID  string `json:"volume_id"`
	Queues    int    `json:"queues"`
	ReadOnly  bool   `json:"read_only"`
	Encrypted bool   `json:"encrypted"`
	IOPS      int64  `json:"iops,omitempty"`
	BytesPerS int64  `json:"bytes_per_second,omitempty"`
}

// SendBlk sends a configuration, a key and an escrow secret.
func SendBlk(w io.Writer, cfg BlkConfig, key, escrow []byte) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := Write(w, b); err != nil {
		return err
	}
	if err := Write(w, key); err != nil {
		return err
	}
	return Write(w, escrow)
}

// ReceiveBlk reads what SendBlk sent. The key and the escrow secret are
// in locked memory (nil when empty), which the caller frees.
func ReceiveBlk(r io.Reader) (cfg BlkConfig, key, escrow *keymem.Buf, err error) {
	b, err := Read(r)
	if err != nil {
		return cfg, nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, nil, nil, fmt.Errorf("cardproto: config: %w", err)
	}
	if key, err = ReadSecret(r); err != nil {
		return cfg, nil, nil, err
	}
	if escrow, err = ReadSecret(r); err != nil {
		key.Free()
		return cfg, nil, nil, err
	}
	if escrow != nil && escrow.Len() != EscrowSecretBytes {
		key.Free()
		escrow.Free()
		return cfg, nil, nil, fmt.Errorf("cardproto: escrow secret of %d bytes, want %d", escrow.Len(), EscrowSecretBytes)
	}
	return cfg, key, escrow, nil
}
