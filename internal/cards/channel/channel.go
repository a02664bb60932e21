// Package channel is the private channel between azoted and a card: a unix
// socketpair made by azoted, one end inherited by the card. Messages are a
// 4-byte little-endian length and a payload; the first is the card's JSON
// configuration, the second its key (raw bytes, possibly empty). The key
// never travels in argv, the environment or a file.
package channel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxMessage bounds one message.
const MaxMessage = 64 << 10

// ErrTooLarge is returned for a message over MaxMessage.
var ErrTooLarge = errors.New("channel: message too large")

// Write sends one message.
func Write(w io.Writer, payload []byte) error {
	if len(payload) > MaxMessage {
		return ErrTooLarge
	}
	b := make([]byte, 4+len(payload))
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	copy(b[4:], payload)
	_, err := w.Write(b)
	clear(b) // it may hold a key
	return err
}

// Read receives one message.
func Read(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[:])
	if n > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
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

// SendBlk sends a configuration and a key.
func SendBlk(w io.Writer, cfg BlkConfig, key []byte) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := Write(w, b); err != nil {
		return err
	}
	return Write(w, key)
}

// ReceiveBlk reads what SendBlk sent.
func ReceiveBlk(r io.Reader) (BlkConfig, []byte, error) {
	var cfg BlkConfig
	b, err := Read(r)
	if err != nil {
		return cfg, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, nil, fmt.Errorf("channel: config: %w", err)
	}
	key, err := Read(r)
	return cfg, key, err
}
