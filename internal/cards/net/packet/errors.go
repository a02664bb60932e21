package packet

import (
	"errors"
	"fmt"
)

// Sentinel errors: each names a reason the card counts dropped frames by;
// test for them with errors.Is. The errors Parse, Finish and Segment return
// are preallocated and wrap one of these, so a guest that sends nothing but
// malformed frames costs no allocation per frame.
var (
	// ErrTruncated means the frame ends before a header or a length in it
	// says it should.
	ErrTruncated = errors.New("packet: truncated frame")
	// ErrBadIPHeader means an IPv4 header breaks RFC 791: a version other
	// than 4, a header shorter than 20 bytes, a total length shorter than
	// the header, or a fragment that could hide a transport header.
	ErrBadIPHeader = errors.New("packet: malformed IPv4 header")
	// ErrBadChecksum means a checksum does not verify.
	ErrBadChecksum = errors.New("packet: bad checksum")
	// ErrBadTransport means a TCP, UDP or ICMP header is malformed: a TCP
	// data offset below 5 words or beyond the segment, a UDP length
	// outside the datagram.
	ErrBadTransport = errors.New("packet: malformed transport header")
	// ErrUnsupported means a well-formed input this package does not
	// handle: ARP for anything but IPv4 over Ethernet, GSO types other
	// than TCPv4 without ECN.
	ErrUnsupported = errors.New("packet: unsupported")
	// ErrTTLExpired means DecTTL was asked to forward a packet whose TTL
	// would reach zero.
	ErrTTLExpired = errors.New("packet: TTL expired")
	// ErrBadVnetHdr means a virtio-net header contradicts its frame:
	// a checksum position outside it, a GSO size too small, GSO on a frame
	// that is not one TCPv4 segment.
	ErrBadVnetHdr = errors.New("packet: malformed virtio-net header")
	// ErrShortBuffer means a caller's buffer cannot hold what is to be
	// written into it.
	ErrShortBuffer = errors.New("packet: buffer too small")
	// ErrInvalidArgument means a builder was given something it cannot
	// encode, such as an IPv6 address or an oversized payload.
	ErrInvalidArgument = errors.New("packet: invalid argument")
)

// The specific reasons, wrapping the sentinels above.
var (
	errShortEthernet = fmt.Errorf("%w: shorter than an Ethernet header", ErrTruncated)
	errShortARP      = fmt.Errorf("%w: ARP packet", ErrTruncated)
	errARPType       = fmt.Errorf("%w: ARP for other than IPv4 over Ethernet", ErrUnsupported)
	errShortIPv4     = fmt.Errorf("%w: IPv4 header", ErrTruncated)
	errIPVersion     = fmt.Errorf("%w: version is not 4", ErrBadIPHeader)
	errIHL           = fmt.Errorf("%w: header length below 20 bytes", ErrBadIPHeader)
	errTotalLen      = fmt.Errorf("%w: total length shorter than the header", ErrBadIPHeader)
	errIPBeyondFrame = fmt.Errorf("%w: IPv4 total length beyond the frame", ErrTruncated)
	errIPChecksum    = fmt.Errorf("%w: IPv4 header", ErrBadChecksum)
	errTinyFragment  = fmt.Errorf("%w: fragment too small for its transport header, or overlapping it (RFC 1858)", ErrBadIPHeader)
	errShortTCP      = fmt.Errorf("%w: TCP header", ErrTruncated)
	errTCPOffset     = fmt.Errorf("%w: TCP data offset below 5 words or beyond the segment", ErrBadTransport)
	errShortUDP      = fmt.Errorf("%w: UDP header", ErrTruncated)
	errUDPLen        = fmt.Errorf("%w: UDP length below 8 or beyond the datagram", ErrBadTransport)
	errShortICMP     = fmt.Errorf("%w: ICMP header", ErrTruncated)
	errL4Checksum    = fmt.Errorf("%w: transport", ErrBadChecksum)
	errNoTransport   = fmt.Errorf("%w: checksum of a packet without a parsed TCP, UDP or ICMP header", ErrUnsupported)
	errNotIPv4       = fmt.Errorf("%w: not an IPv4 packet", ErrUnsupported)

	errShortVnetHdr = fmt.Errorf("%w: virtio-net header", ErrTruncated)
	errCsumRange    = fmt.Errorf("%w: csum_start/csum_offset beyond the frame", ErrBadVnetHdr)
	errGSOType      = fmt.Errorf("%w: GSO type other than TCPv4", ErrUnsupported)
	errGSOECN       = fmt.Errorf("%w: GSO with ECN", ErrUnsupported)
	errGSOSize      = fmt.Errorf("%w: gso_size below the minimum MSS", ErrBadVnetHdr)
	errGSONotTCP    = fmt.Errorf("%w: GSO TCPv4 on a frame that is not one unfragmented IPv4 TCP segment", ErrBadVnetHdr)
	errSegmentBuf   = fmt.Errorf("%w: segment does not fit", ErrShortBuffer)
)
