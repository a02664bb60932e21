package virtio

import (
	"errors"
	"fmt"
)

// Sentinel errors; test for them with errors.Is. The errors Pop returns for
// a malformed chain are preallocated, so a guest that sends nothing but bad
// chains still costs no allocation per request.
var (
	// ErrBroken means the driver corrupted the ring itself; the queue
	// serves nothing more until it is reset (VIRTIO's DEVICE_NEEDS_RESET).
	ErrBroken = errors.New("virtio: virtqueue broken by the driver, reset needed")
	// ErrChainLoop means a descriptor chain visited more descriptors than
	// its table holds, so it loops.
	ErrChainLoop = errors.New("virtio: descriptor chain loops")
	// ErrChainTooLong means a chain has more descriptors than the queue's
	// MaxChainLen, or more than 4 GiB of buffers.
	ErrChainTooLong = errors.New("virtio: descriptor chain too long")
	// ErrOutOfBounds means an address range is not in guest memory.
	ErrOutOfBounds = errors.New("virtio: address range outside guest memory")
	// ErrBadDescriptor means a descriptor breaks the rules of section 2.7.5.
	ErrBadDescriptor = errors.New("virtio: malformed descriptor")
	// ErrInvalidConfig means NewGuestMemory or NewQueue was given a memory
	// table or queue configuration that cannot be served.
	ErrInvalidConfig = errors.New("virtio: invalid configuration")
)

// The specific reasons a chain is rejected, wrapping the sentinels above.
var (
	errNextRange          = fmt.Errorf("%w: next index beyond the descriptor table", ErrBadDescriptor)
	errWrongDirection     = fmt.Errorf("%w: device-readable descriptor after a device-writable one", ErrBadDescriptor)
	errIndirectNotAllowed = fmt.Errorf("%w: indirect descriptor without VIRTIO_F_INDIRECT_DESC", ErrBadDescriptor)
	errIndirectNext       = fmt.Errorf("%w: indirect descriptor with NEXT set", ErrBadDescriptor)
	errNestedIndirect     = fmt.Errorf("%w: indirect descriptor inside an indirect table", ErrBadDescriptor)
	errIndirectLen        = fmt.Errorf("%w: indirect table length is zero or not a multiple of 16", ErrBadDescriptor)
	errIndirectTable      = fmt.Errorf("%w: indirect table", ErrOutOfBounds)
	errBuffer             = fmt.Errorf("%w: buffer", ErrOutOfBounds)
	errTooMany            = fmt.Errorf("%w: more descriptors than MaxChainLen", ErrChainTooLong)
	errTooManyBytes       = fmt.Errorf("%w: more than 4 GiB of buffers", ErrChainTooLong)
)
