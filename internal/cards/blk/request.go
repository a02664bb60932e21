package blk

import (
	"encoding/binary"

	"github.com/azote/azote/internal/virtio"
)

// request is one virtio-blk request, parsed once from its descriptor chain
// (everything the guest wrote checked against the device) into what it
// asks for, where its data lies and what it costs; process then does it.
// A request the device refuses is still a request: it carries the status to
// answer, costs one operation and no bytes, and does no I/O.
type request struct {
	op     op
	status byte // statusOK for a request to process, else the answer
	sector uint64
	// data is the guest's buffers: for a read the writable ones without
	// the status byte, for GET_ID where the id goes, for a write and for
	// DISCARD/WRITE_ZEROES the readable ones after the header.
	data [][]byte
	n    uint64  // bytes the request moves on the device, once served
	seg  segment // DISCARD and WRITE_ZEROES
	// cost is what the QoS budget is charged, in bytes (one operation is
	// charged whatever the request).
	cost uint64
}

// segment is one DISCARD or WRITE_ZEROES range.
type segment struct{ sector, count uint64 }

// refused is a request answered with status and nothing else.
func refused(o op, status byte) request { return request{op: o, status: status} }

// parse reads a chain into a request, its buffer lists in iov (which
// must have room for MaxSegments+2 entries to avoid allocating).
func (d *Device) parse(c *virtio.Chain, chainErr error, iov [][]byte) request {
	if chainErr != nil {
		return refused(opInvalid, statusIOErr)
	}
	typ, sector, rest, ok := header(c, iov)
	if !ok {
		return refused(opInvalid, statusIOErr)
	}
	switch typ {
	case typeIn:
		data := dataIn(c, iov)
		n := totalLen(data)
		// Transfers are whole sectors (virtio 1.2 §5.2.6.1), which also
		// keeps O_DIRECT and the per-sector cipher aligned.
		if !d.inRange(sector, n) {
			return refused(opRead, statusIOErr)
		}
		return request{op: opRead, sector: sector, data: data, n: n, cost: n}
	case typeOut:
		n := totalLen(rest)
		if d.cfg.ReadOnly || !d.inRange(sector, n) {
			return refused(opWrite, statusIOErr)
		}
		return request{op: opWrite, sector: sector, data: rest, n: n, cost: n}
	case typeFlush:
		return request{op: opFlush}
	case typeGetID:
		return request{op: opGetID, data: dataIn(c, iov)}
	case typeDiscard, typeWriteZeroes:
		o := opDiscard
		if typ == typeWriteZeroes {
			o = opWriteZeroes
		}
		seg, ok := d.discardSegment(rest)
		if !ok || d.cfg.ReadOnly {
			return refused(o, statusIOErr)
		}
		// Write-zeroes is charged the bytes it covers (on an encrypted
		// volume it writes them all); a discard one sector, as Linux's
		// block throttling charges it.
		cost := uint64(SectorSize)
		if o == opWriteZeroes {
			cost = seg.count * SectorSize
		}
		return request{op: o, data: rest, seg: seg, n: seg.count * SectorSize, cost: cost}
	}
	return refused(opUnsupported, statusUnsupp)
}

// header reads the 16-byte request header from the front of the readable
// buffers and returns the rest of them in iov.
func header(c *virtio.Chain, iov [][]byte) (typ uint32, sector uint64, rest [][]byte, ok bool) {
	var h [16]byte
	n := 0
	rest = iov[:0]
	for _, b := range c.Readable {
		if n < 16 {
			k := copy(h[n:], b)
			n += k
			b = b[k:]
		}
		if len(b) > 0 {
			rest = append(rest, b)
		}
	}
	if n < 16 {
		return 0, 0, rest, false
	}
	return binary.LittleEndian.Uint32(h[0:]), binary.LittleEndian.Uint64(h[8:]), rest, true
}

// dataIn returns the writable buffers without the trailing status byte.
func dataIn(c *virtio.Chain, iov [][]byte) [][]byte {
	iov = append(iov[:0], c.Writable...)
	for i := len(iov) - 1; i >= 0; i-- {
		if len(iov[i]) > 0 {
			iov[i] = iov[i][:len(iov[i])-1]
			break
		}
	}
	return iov
}

func totalLen(iov [][]byte) uint64 {
	var n uint64
	for _, b := range iov {
		n += uint64(len(b))
	}
	return n
}

// inRange checks that n bytes starting at sector are whole sectors and lie
// on the device.
func (d *Device) inRange(sector, n uint64) bool {
	if n%SectorSize != 0 {
		return false
	}
	count := n / SectorSize
	return sector <= d.sectors && count <= d.sectors-sector
}

// discardSegment reads and checks the segment list of a DISCARD or
// WRITE_ZEROES request (the device takes one segment).
func (d *Device) discardSegment(iov [][]byte) (segment, bool) {
	n := totalLen(iov)
	if n == 0 || n%16 != 0 || n/16 > maxDiscardSegs {
		return segment{}, false
	}
	var b [16]byte
	gather(b[:], iov, 0)
	seg := segment{binary.LittleEndian.Uint64(b[0:]), uint64(binary.LittleEndian.Uint32(b[8:]))}
	flags := binary.LittleEndian.Uint32(b[12:])
	if flags&^1 != 0 || seg.count > maxDiscardSectors || !d.inRange(seg.sector, seg.count*SectorSize) {
		return segment{}, false
	}
	return seg, true
}
