// Package encap is the encapsulation of azote's VPC data plane: how a net
// card carries a guest's Ethernet frame to the card serving the
// destination interface, in a UDP datagram over the underlay (loopback on
// one host, the hosts' underlay addresses between hosts), encrypted and
// authenticated with AES-256-GCM under a key of the VPC that azoted
// generates and hands to the VPC's cards over their private channels.
//
// A Keyring holds one VPC's keys by epoch; a Sender seals the frames of
// one interface; a Receiver opens the packets for one interface and
// rejects, each with its own sentinel error for the card to count,
// truncated, malformed, wrong-version, plaintext, wrong-VPC,
// wrong-destination, unknown-epoch, forged, replayed and too-old packets.
// The package works on byte slices only: the card owns the sockets.
//
// It never logs, never opens a socket or a file, never lets a packet that
// failed authentication change any state, never accepts a plaintext packet
// at an encrypting Receiver, never seals two packets under one (key,
// nonce) pair, and never keeps a key, a derived key or an AES-GCM state
// outside locked memory that it wipes when the key is dropped (with the
// exceptions named under "Keys in memory"). Once a sender session is
// established, Seal and Open allocate nothing.
//
// # Wire format
//
// The UDP payload of every packet is a 36-byte header, then the frame
// sealed with AES-256-GCM, then the 16-byte GCM tag. All integers are
// big-endian.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    magic 0x41 'A' 0x5A 'Z'    |  version = 1  |  flags        |  0
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                            VPC id                             |  4
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           key epoch                           |  8
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                   destination interface id                    | 12
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      source interface id                      | 16
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               | 20
//	+                   sender session id (64 bits)                 +
//	|                                                               | 24 ┐
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+    │ GCM
//	|                                                               | 28 │ nonce
//	+                       counter (64 bits)                       +    │ (24-35)
//	|                                                               | 32 ┘
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  inner Ethernet frame, encrypted (as long as the frame)      ...| 36
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      GCM tag (16 bytes)                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//	bytes  field        meaning
//	0-1    magic        0x415A ("AZ"); anything else is ErrMalformed
//	2      version      1; anything else is ErrVersion
//	3      flags        bit 0 (0x01): plaintext, no encryption and no tag;
//	                    bits 1-7 reserved, must be 0 (else ErrMalformed)
//	4-7    VPC id       the VPC, numbered by azoted; a Receiver of another
//	                    VPC refuses it (ErrWrongVPC)
//	8-11   key epoch    which of the VPC's keys sealed the frame
//	12-15  destination  the interface the frame is for; any other
//	                    interface's Receiver refuses it
//	16-19  source       the interface that sent it
//	20-27  session id   random, chosen by the sending process per session
//	28-35  counter      the packet's number in its session: 1, 2, …
//	36-    frame        the guest's Ethernet frame, encrypted
//	end-16 tag          AES-GCM tag over header (as additional data) and frame
//
// The whole header is the additional authenticated data: not one bit of
// it can change without the tag failing. The GCM nonce is the header's
// last 12 bytes (the low half of the session id, then the counter). The
// encrypted frame is as long as the plaintext one, so the overhead is
// Overhead = 52 bytes, plus the underlay's IPv4 and UDP headers (28). A
// plaintext packet (the benchmark's baseline only) is the same header
// with flag 0x01 and the frame in clear, without a tag.
//
// # Keys
//
// azoted makes a 32-byte key per VPC and epoch and hands it to the cards
// of that VPC, and only to them. A card never holds another VPC's key,
// and a guest never holds any. From the key the Keyring derives, with
// HKDF-SHA256 (RFC 5869),
//
//	PRK         = HKDF-Extract(salt = "azote encap v1 salt", key)
//	session key = HKDF-Expand(PRK, "azote encap v1 session key" ‖
//	                          VPC ‖ epoch ‖ source ‖ session id, 32)
//
// (VPC, epoch and source as 4 big-endian bytes, the session id as 8), and
// each packet of a session is sealed with AES-256-GCM under its session
// key. Receivers derive the same key from the header's fields.
//
// # Why no (key, nonce) pair repeats
//
// AES-GCM fails badly if one key seals two messages under one nonce: the
// XOR of the plaintexts leaks and the authentication key can be solved
// for, after which anyone forges. A card keeps its counter in memory only
// (it has no disk to keep it on, by design) and may be killed with
// SIGKILL and restarted at any instant, so a counter under the VPC key
// alone would start again at 1 and repeat nonces. Instead:
//
//   - Each Sender starts a session with a 64-bit session id from
//     crypto/rand, and seals only under that session's own key. A
//     restarted card starts a new session, under a new key; nothing of the
//     old one needs to be remembered anywhere, and no clock is trusted.
//   - Within a session the counter is one atomic integer of one process,
//     incremented for every packet from 1, and the session is replaced
//     after SessionPackets (2^40) packets, so it never wraps: one key never
//     sees one nonce twice.
//   - Two sessions share a key only if their (VPC key, VPC, epoch, source,
//     session id) are equal: HKDF-Expand is a PRF, so different inputs give
//     independent keys. Sessions of different interfaces or epochs
//     therefore never collide; sessions of one interface in one epoch do
//     only if their random ids do, with probability below n²/2^65 for n
//     sessions — under 2^-45 even for a thousand restarts of one card
//     within one epoch. This holds even if two processes serve one
//     interface at once (an old card not yet reaped beside its
//     replacement): no coordination is needed.
//
// Alternatives rejected: random 96-bit nonces under the VPC key (NIST
// SP 800-38D caps that at 2^32 packets per key, minutes at line rate);
// counters reserved from azoted in persisted blocks (a round trip and a
// durable write on every card start, and a nonce repeat if azoted itself
// loses a write); a timestamp in the nonce (clocks step backwards).
//
// # Receiving
//
// A Receiver checks, in this order and before any cryptography: length,
// magic, version, mode, VPC, destination, that the counter is between 1
// and SessionPackets, that the epoch is one its keyring holds, and the
// replay window. Only then does it decrypt in
// place, and only a packet whose tag verifies updates anything.
//
// The replay window of each sender session is an RFC 6479 bitmap (as in
// WireGuard) of 4096 bits, which judges the WindowSize = 4032 counters up
// to the highest one accepted: a counter seen before is ErrReplay, one
// WindowSize or more behind is ErrTooOld, and reordering within the window
// is accepted, each counter once. A jump forward costs O(1).
//
// Sessions are cached, up to a bound, least recently used first out. A
// packet of an unknown session costs one key derivation (a few
// microseconds), done in a scratch slot outside the cache: only if its tag
// verifies does the session take a place in the cache, so forged packets
// with random session ids neither evict genuine sessions nor grow
// anything. An evicted session leaves a tombstone with its highest
// counter, so its old packets do not open again if it is derived anew. A
// flood of forged packets can still cost CPU (as any authenticated
// protocol's does); the underlay listens only on the hosts' own network.
//
// # Rotation
//
// A Keyring keeps up to three epochs: the current one (sealing), the
// previous one (still opened, for packets in flight and peers not yet
// moved), and optionally the next one (opened, not yet used to seal). To
// rotate without loss azoted calls Accept(e+1) on every card of the VPC,
// then SetKeys(e+1) on every card; a later rotation drops e. A packet of
// any other epoch is ErrUnknownEpoch. When an epoch is dropped, its PRK,
// its sessions' AES-GCM states and its tombstones go with it.
//
// # Keys in memory
//
// The PRKs, the session keys being derived, the HMAC blocks that derive
// them and every session's AES-GCM state (round keys and GHASH table) live
// in locked memory left out of core dumps (internal/keymem) and are
// wiped when dropped. The AES-GCM state is built by crypto/cipher in the
// heap and moved into locked memory at once, and the heap copy wiped
// (place_unsafe.go says why that is sound). What escapes this:
// intermediate SHA-256 chaining values on the goroutine stack during one
// derivation, and whatever crypto/aes leaves in registers and stack. The
// card process is also non-dumpable (keymem.NoDumps). Encryption is
// refused (ErrNoHardwareAES) on a CPU without AES and carry-less multiply
// instructions, where the standard library's AES would be table-based and
// open to cache-timing attacks by a co-tenant.
//
// # What it does not protect
//
// The underlay's IP and UDP headers are not authenticated (they only route;
// a packet's identity is its authenticated header). The header is
// authenticated but not secret: who talks to whom within a VPC, how much
// and when is visible to whoever sees the underlay. The key is the VPC's,
// so a card can seal as any interface of its own VPC: the source field
// proves VPC membership, not which card sent it, and a card should also
// check a frame's inner source against the interface the header names.
// No card can seal for, or open, another VPC's traffic.
package encap
