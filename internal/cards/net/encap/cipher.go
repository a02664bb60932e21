package encap

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"sync"

	"github.com/azote/azote/internal/keymem"
)

// slotAlign is the alignment and granularity of state slots: a cache
// line, which also satisfies any alignment the state needs.
const slotAlign = 64

// gcmState is the size of one AES-GCM state slot, or why there is none.
var gcmState = sync.OnceValues(func() (int, error) {
	if !hardwareAES {
		return 0, ErrNoHardwareAES
	}
	// The probe's key is public (zero), so its state may stay in the heap.
	block, err := aes.NewCipher(make([]byte, KeySize))
	if err != nil {
		return 0, fmt.Errorf("encap: %w", err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return 0, fmt.Errorf("encap: %w", err)
	}
	if _, err := stateType(block); err != nil {
		return 0, err
	}
	t, err := stateType(g)
	if err != nil {
		return 0, err
	}
	return (int(t.Size()) + slotAlign - 1) &^ (slotAlign - 1), nil
})

// Available reports whether this host can encrypt: nil, or an error
// wrapping ErrNoHardwareAES. NewKeyring fails with the same error.
func Available() error {
	_, err := gcmState()
	return err
}

// slab is n slots of locked memory for AES-GCM states.
type slab struct {
	mem  *keymem.Buf
	size int // bytes per slot
	n    int
}

func newSlab(n int) (*slab, error) {
	size, err := gcmState()
	if err != nil {
		return nil, err
	}
	mem, err := keymem.New(n * size)
	if err != nil {
		return nil, fmt.Errorf("encap: locked memory for %d session keys: %w", n, err)
	}
	return &slab{mem: mem, size: size, n: n}, nil
}

// slot is the i-th slot. The memory is page-aligned and slots are
// multiples of slotAlign, so each slot is too.
func (s *slab) slot(i int) []byte {
	return s.mem.Bytes()[i*s.size : (i+1)*s.size : (i+1)*s.size]
}

// free wipes and unmaps every slot.
func (s *slab) free() { s.mem.Free() }

// newAEAD builds AES-256-GCM for key with its state in slot, and wipes
// the heap copies it was built in. The key slice is not retained.
func newAEAD(key, slot []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encap: %w", err)
	}
	defer wipe(block)
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("encap: %w", err)
	}
	a, err := place(g, slot)
	if err != nil {
		wipe(g)
		return nil, err
	}
	return a, nil
}
