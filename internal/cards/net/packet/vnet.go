package packet

import "encoding/binary"

// VnetHdrLen is the length of struct virtio_net_hdr with num_buffers, the
// header that precedes every frame on a virtio-net queue once
// VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF is negotiated (virtio 1.2
// §5.1.6).
const VnetHdrLen = 12

// VnetHdr flags.
const (
	// VnetFlagNeedsCsum (VIRTIO_NET_HDR_F_NEEDS_CSUM): the checksum from
	// CsumStart to the end of the frame is still to be computed and
	// stored at CsumStart+CsumOffset; the field holds the pseudo-header
	// sum.
	VnetFlagNeedsCsum = 1
	// VnetFlagDataValid (VIRTIO_NET_HDR_F_DATA_VALID): on receive, the
	// device has checked the checksums.
	VnetFlagDataValid = 2
	// VnetFlagRSCInfo (VIRTIO_NET_HDR_F_RSC_INFO): CsumStart and
	// CsumOffset count coalesced segments and duplicate ACKs instead.
	VnetFlagRSCInfo = 4
)

// VnetHdr GSO types.
const (
	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3
	GSOTCPv6 = 4
	GSOUDPL4 = 5
	GSOECN   = 0x80 // flag: the TCP segment has ECN (CWR) set
)

// MinMSS is the smallest gso_size Segment accepts: Linux's TCP_MIN_SND_MSS.
// It bounds how many frames one GSO frame can turn into (at most
// 65535/MinMSS), so a guest cannot make the card emit thousands of tiny
// frames from one descriptor chain.
const MinMSS = 48

// VnetHdr mirrors struct virtio_net_hdr (virtio 1.2 §5.1.6) with
// num_buffers; on the queues its 16-bit fields are little-endian.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
	NumBuffers uint16
}

// Decode reads the header from the first VnetHdrLen bytes of b.
func (h *VnetHdr) Decode(b []byte) error {
	if len(b) < VnetHdrLen {
		return errShortVnetHdr
	}
	le := binary.LittleEndian
	*h = VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     le.Uint16(b[2:4]),
		GSOSize:    le.Uint16(b[4:6]),
		CsumStart:  le.Uint16(b[6:8]),
		CsumOffset: le.Uint16(b[8:10]),
		NumBuffers: le.Uint16(b[10:12]),
	}
	return nil
}

// Put writes the header into the first VnetHdrLen bytes of b, which must
// be that long.
func (h *VnetHdr) Put(b []byte) {
	le := binary.LittleEndian
	_ = b[VnetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	le.PutUint16(b[2:4], h.HdrLen)
	le.PutUint16(b[4:6], h.GSOSize)
	le.PutUint16(b[6:8], h.CsumStart)
	le.PutUint16(b[8:10], h.CsumOffset)
	le.PutUint16(b[10:12], h.NumBuffers)
}

// Finish does in software what VIRTIO_NET_HDR_F_NEEDS_CSUM asked of the
// device, for a frame (after its header) that goes to a receiver that did
// not negotiate VIRTIO_NET_F_GUEST_CSUM: it sums frame from CsumStart to
// the end, the pseudo-header sum the sender left in the checksum field
// included, stores the complement at CsumStart+CsumOffset (0 as 0xffff, as
// Linux does) and clears the flag. Without the flag it does nothing. It
// checks only that the positions lie inside the frame; what they point at
// is the sender's business.
//
// Frames that are also GSO are segmented instead (Segment computes every
// segment's checksums itself).
func Finish(frame []byte, h *VnetHdr) error {
	if h.Flags&VnetFlagNeedsCsum == 0 {
		return nil
	}
	start := int(h.CsumStart)
	field := start + int(h.CsumOffset)
	if field+2 > len(frame) {
		return errCsumRange
	}
	c := ^Checksum(frame[start:], 0)
	if c == 0 {
		c = 0xffff
	}
	be.PutUint16(frame[field:], c)
	h.Flags &^= VnetFlagNeedsCsum
	return nil
}

// Segment cuts a GSO_TCPV4 frame (after its virtio-net header h) into
// frames of at most GSOSize bytes of TCP payload, as a NIC with TSO or
// Linux's software GSO does, for a receiver that did not negotiate
// VIRTIO_NET_F_GUEST_TSO4. Each segment is built in buf and passed to emit
// as buf[:n]; emit must be done with it before it returns (the next
// segment overwrites it), and an error from emit stops Segment and is
// returned. buf must hold the headers plus one GSOSize of payload.
//
// Every segment carries the original Ethernet, IPv4 (options included)
// and TCP (options included) headers with: the IPv4 total length of the
// segment, the IPv4 ID incremented per segment, the sequence number
// advanced by the payload before it, CWR on the first segment only, FIN
// and PSH on the last only, and both checksums computed afresh (the
// sender's partial checksum, CsumStart, CsumOffset and HdrLen are not
// trusted). Ethernet padding after the datagram is dropped. A frame whose
// payload fits one segment comes out as one segment.
//
// It refuses GSO types other than TCPv4 and the ECN flag (ErrUnsupported),
// GSO sizes below MinMSS and frames that are not one unfragmented IPv4 TCP
// packet (ErrBadVnetHdr), and a frame Parse refuses, with Parse's error.
// It does not allocate.
func Segment(frame []byte, h *VnetHdr, buf []byte, emit func(seg []byte) error) error {
	if h.GSOType&GSOECN != 0 {
		return errGSOECN
	}
	if h.GSOType != GSOTCPv4 {
		return errGSOType
	}
	mss := int(h.GSOSize)
	if mss < MinMSS {
		return errGSOSize
	}
	var p Packet
	if err := Parse(frame, &p); err != nil {
		return err
	}
	if p.Kind != KindIPv4 || p.Proto != ProtoTCP || p.Fragment || !p.HasTransport {
		return errGSONotTCP
	}
	hdrLen := p.Payload
	payload := frame[p.Payload:p.End]
	if len(buf) < hdrLen+min(mss, len(payload)) {
		return errSegmentBuf
	}
	ipLen := p.L4 - p.L3
	tcpLen := p.Payload - p.L4
	flags := p.TCPFlags
	seq := p.Seq
	id := p.ID
	for first := true; first || len(payload) > 0; first = false {
		n := min(mss, len(payload))
		last := n == len(payload)
		seg := buf[:hdrLen+n]
		copy(seg, frame[:hdrLen])
		copy(seg[hdrLen:], payload[:n])
		payload = payload[n:]

		ip := seg[p.L3:p.L4]
		be.PutUint16(ip[2:4], uint16(ipLen+tcpLen+n))
		be.PutUint16(ip[4:6], id)
		ip[10], ip[11] = 0, 0
		be.PutUint16(ip[10:12], IPv4Checksum(ip))

		tcp := seg[p.L4:]
		f := flags
		if !first {
			f &^= TCPFlagCWR
		}
		if !last {
			f &^= TCPFlagFIN | TCPFlagPSH
		}
		tcp[13] = f
		be.PutUint32(tcp[4:8], seq)
		tcp[16], tcp[17] = 0, 0
		sum := PseudoHeaderChecksum(ProtoTCP, p.SrcIP, p.DstIP, uint16(tcpLen+n))
		be.PutUint16(tcp[16:18], ^Checksum(tcp, sum))

		if err := emit(seg); err != nil {
			return err
		}
		seq += uint32(n)
		id++
	}
	return nil
}
