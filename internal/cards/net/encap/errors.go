package encap

import "errors"

// Sentinel errors; test for them with errors.Is. Open returns each
// rejection reason as its own sentinel, unwrapped, so that a card counts
// drops by reason without allocating per packet.
var (
	// ErrTruncated: the packet is shorter than a header (and, when
	// encrypted, its tag).
	ErrTruncated = errors.New("encap: packet truncated")
	// ErrMalformed: the header's magic is wrong, a reserved flag is set,
	// or its counter is 0 or beyond SessionPackets (no Sender numbers a
	// packet so).
	ErrMalformed = errors.New("encap: not an azote encapsulation header")
	// ErrVersion: the header names a version this code does not speak.
	ErrVersion = errors.New("encap: unknown encapsulation version")
	// ErrPlaintext: a plaintext packet reached a receiver that requires
	// encryption.
	ErrPlaintext = errors.New("encap: plaintext packet refused by an encrypting receiver")
	// ErrEncrypted: an encrypted packet reached a plaintext receiver
	// (benchmark configurations only).
	ErrEncrypted = errors.New("encap: encrypted packet at a plaintext receiver")
	// ErrWrongVPC: the packet is for another VPC than the receiver's.
	ErrWrongVPC = errors.New("encap: packet for another VPC")
	// ErrWrongDestination: the packet is for another interface than the
	// one the receiver serves.
	ErrWrongDestination = errors.New("encap: packet for another interface")
	// ErrUnknownEpoch: the packet's key epoch is not one the receiver's
	// keyring holds (older than the previous epoch, or not yet pushed).
	ErrUnknownEpoch = errors.New("encap: unknown key epoch")
	// ErrAuth: the packet failed authentication (forged, corrupted, or
	// sealed under another key). Nothing about the receiver changed.
	ErrAuth = errors.New("encap: packet failed authentication")
	// ErrReplay: the packet's counter was already accepted for its sender
	// session.
	ErrReplay = errors.New("encap: replayed packet")
	// ErrTooOld: the packet's counter is behind the replay window of its
	// sender session, so whether it was seen is no longer known.
	ErrTooOld = errors.New("encap: packet older than the replay window")
	// ErrBusy: the receiver's session cache is full of sessions whose
	// packets are being opened right now, so an authenticated packet of a
	// new session could not be given a window. It needs more concurrent
	// Open calls than the cache has entries.
	ErrBusy = errors.New("encap: every session cache entry is in use")

	// ErrNoKey: Seal was called before the keyring had a sending epoch.
	ErrNoKey = errors.New("encap: no key to send with")
	// ErrFrameSize: a frame too large for one underlay datagram.
	ErrFrameSize = errors.New("encap: frame larger than MaxFrame")
	// ErrOverlap: Seal's frame overlaps its output other than exactly
	// where the sealed frame goes.
	ErrOverlap = errors.New("encap: frame overlaps the output buffer inexactly")
	// ErrClosed: the Sender, Receiver or Keyring was closed.
	ErrClosed = errors.New("encap: closed")

	// ErrKeySize: a key that is not KeySize bytes.
	ErrKeySize = errors.New("encap: a VPC key is 32 bytes")
	// ErrStaleEpoch: SetKeys or Accept with an epoch older than the
	// keyring's sending epoch.
	ErrStaleEpoch = errors.New("encap: key epoch older than the current one")
	// ErrKeyConflict: an epoch the keyring holds, given again with another
	// key. Two keys under one epoch would make receivers that cached
	// sessions of the first reject the second's traffic, so it is refused.
	ErrKeyConflict = errors.New("encap: a different key for an epoch already held")
	// ErrNoHardwareAES: this CPU (or build) has no AES and carry-less
	// multiply instructions for the standard library to use, whose
	// portable AES is table-based and not constant-time; or the standard
	// library's AES-GCM state cannot be kept in locked memory. Encryption
	// is refused rather than run that way beside other tenants.
	ErrNoHardwareAES = errors.New("encap: no constant-time AES-GCM on this host (needs AES-NI and PCLMULQDQ, or ARMv8 AES and PMULL)")
)
