package cardproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/azote/azote/internal/keymem"
)

// A fill card (KindFill) writes an imported disk into a new volume and
// exits. It inherits the destination volume file (FDOut, already at its
// final size), the read end of a pipe carrying the disk's plaintext
// (FDIn) and the private channel (FDChannel), on which azoted sends two
// messages: the FillConfig (JSON), then the volume's data key (empty for
// a plaintext volume). The card encrypts as it writes, checks the
// stream's length and SHA-256 digest once it has read it all, and writes
// one FillReport on stdout. azoted passes the stream through from its
// client and keeps none of it.

// FillConfig is what a fill card is told of the stream.
type FillConfig struct {
	// Length is the number of bytes the stream must carry: one more is
	// refused, as is one less.
	Length int64 `json:"length"`
	// SHA256 is the hex digest the stream's bytes must have.
	SHA256 string `json:"sha256"`
}

// Reasons a fill card refuses a stream (FillReport.Refused).
const (
	FillShort  = "short"  // the stream ended before Length bytes
	FillLong   = "long"   // the stream carried more than Length bytes
	FillDigest = "digest" // the bytes do not have the declared digest
)

// FillResult is what a fill card did.
type FillResult struct {
	Bytes     int64 `json:"bytes"`     // of the stream, read and written
	Encrypted bool  `json:"encrypted"` // the card wrote ciphertext (it was given a key)
}

// FillReport is the one JSON line a fill card writes on stdout.
type FillReport struct {
	FillResult
	// Refused is one of FillShort, FillLong, FillDigest: the stream was
	// not what was declared. Message says more.
	Refused string `json:"refused,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"` // the card failed (a full disk, …)
}

// SendFill sends a fill card its configuration and key (nil: plaintext).
func SendFill(w io.Writer, cfg FillConfig, key []byte) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := Write(w, b); err != nil {
		return err
	}
	return Write(w, key)
}

// ReceiveFill reads what SendFill sent; the key is in locked memory (nil
// when empty), which the caller frees.
func ReceiveFill(r io.Reader) (cfg FillConfig, key *keymem.Buf, err error) {
	b, err := Read(r)
	if err != nil {
		return cfg, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, nil, fmt.Errorf("cardproto: fill config: %w", err)
	}
	key, err = ReadSecret(r)
	return cfg, key, err
}
