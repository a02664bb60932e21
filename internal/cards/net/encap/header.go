package encap

import "encoding/binary"

// Sizes of the format (see the package documentation for the layout).
const (
	// HeaderLen is the length of the encapsulation header.
	HeaderLen = 36
	// TagLen is the length of the AES-GCM tag after an encrypted frame.
	TagLen = 16
	// Overhead is what encryption adds to a frame: header and tag.
	Overhead = HeaderLen + TagLen
	// MaxPacket is the largest UDP payload over IPv4 (65535 minus the IPv4
	// and UDP headers).
	MaxPacket = 65535 - 20 - 8
	// MaxFrame is the largest frame Seal takes.
	MaxFrame = MaxPacket - Overhead
	// KeySize is the length of a VPC key.
	KeySize = 32
)

// Header fields' constants.
const (
	// Magic is the first two bytes of every packet: "AZ".
	Magic = 0x415a
	// Version is the format version this package writes and reads.
	Version = 1
	// FlagPlaintext marks a packet whose frame is neither encrypted nor
	// authenticated and has no tag: the benchmark's baseline only.
	FlagPlaintext = 0x01
	// flagsKnown are the flag bits this version defines; the others must
	// be zero.
	flagsKnown = FlagPlaintext
)

// Header is the encapsulation header, the additional authenticated data
// of the sealed frame.
type Header struct {
	Flags   uint8  // FlagPlaintext or 0
	VPC     uint32 // the VPC, as azoted numbers it
	Epoch   uint32 // the key epoch the frame is sealed under
	Dst     uint32 // the destination interface
	Src     uint32 // the source interface
	Session uint64 // the sending process's random session id
	Counter uint64 // the packet's number in its session, from 1
}

// Plaintext reports whether the header carries FlagPlaintext.
func (h Header) Plaintext() bool { return h.Flags&FlagPlaintext != 0 }

// Put writes h into b[:HeaderLen]; b must be at least that long.
func (h Header) Put(b []byte) {
	_ = b[HeaderLen-1]
	binary.BigEndian.PutUint16(b[0:], Magic)
	b[2] = Version
	b[3] = h.Flags
	binary.BigEndian.PutUint32(b[4:], h.VPC)
	binary.BigEndian.PutUint32(b[8:], h.Epoch)
	binary.BigEndian.PutUint32(b[12:], h.Dst)
	binary.BigEndian.PutUint32(b[16:], h.Src)
	binary.BigEndian.PutUint64(b[20:], h.Session)
	binary.BigEndian.PutUint64(b[28:], h.Counter)
}

// ParseHeader reads the header at the start of pkt. It checks the length,
// the magic, the version and that no reserved flag is set, and nothing
// else: the header is not authenticated until Open has checked the tag.
func ParseHeader(pkt []byte) (Header, error) {
	if len(pkt) < HeaderLen {
		return Header{}, ErrTruncated
	}
	if binary.BigEndian.Uint16(pkt) != Magic {
		return Header{}, ErrMalformed
	}
	if pkt[2] != Version {
		return Header{}, ErrVersion
	}
	if pkt[3]&^flagsKnown != 0 {
		return Header{}, ErrMalformed
	}
	return Header{
		Flags:   pkt[3],
		VPC:     binary.BigEndian.Uint32(pkt[4:]),
		Epoch:   binary.BigEndian.Uint32(pkt[8:]),
		Dst:     binary.BigEndian.Uint32(pkt[12:]),
		Src:     binary.BigEndian.Uint32(pkt[16:]),
		Session: binary.BigEndian.Uint64(pkt[20:]),
		Counter: binary.BigEndian.Uint64(pkt[28:]),
	}, nil
}
