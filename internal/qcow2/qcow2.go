package qcow2

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Refusals.
var (
	// ErrCorrupt is an image whose header or tables point outside the
	// file, are misaligned or disagree with each other: a truncated or
	// damaged file.
	ErrCorrupt = errors.New("qcow2: corrupt or truncated image")
	// ErrUnsupported is a valid image this reader does not convert.
	ErrUnsupported = errors.New("qcow2: unsupported image")
)

// Magic starts every qcow2 file.
var Magic = []byte{'Q', 'F', 'I', 0xfb}

// Limits. MaxVirtualSize is azote's largest volume; MaxL1Bytes is QEMU's
// own bound on the L1 table (QCOW_MAX_L1_SIZE).
const (
	MaxVirtualSize = 64 << 40
	MaxL1Bytes     = 32 << 20
	minClusterBits = 9
	maxClusterBits = 21
	v2HeaderLen    = 72
	v3HeaderLen    = 104
)

// Incompatible feature bits (qcow2.txt).
const (
	incompatDirty         = 1 << 0 // refcounts may be stale: harmless to a reader
	incompatCorrupt       = 1 << 1
	incompatExternalData  = 1 << 2
	incompatCompression   = 1 << 3 // compression_type field is in use
	incompatExtendedL2    = 1 << 4
	knownIncompatFeatures = incompatDirty | incompatCorrupt | incompatExternalData | incompatCompression | incompatExtendedL2
)

// Table entry fields.
const (
	offsetMask     = 0x00fffffffffffe00 // bits 9–55: a host offset in an L1 or standard L2 entry
	l1Reserved     = 0x7f000000000001ff // bits 0–8 and 56–62 of an L1 entry
	l2Compressed   = 1 << 62
	l2StdReserved  = 0x3f000000000001fe // bits 1–8 and 56–61 of a standard L2 entry
	l2ZeroFlag     = 1 << 0
	copiedFlagMask = 1 << 63
)

// Header is what the reader uses of a qcow2 header.
type Header struct {
	Version     uint32
	ClusterBits uint32
	Size        uint64 // virtual disk size in bytes
	L1Size      uint32 // entries
	L1Offset    uint64
	Incompat    uint64
	Compression uint8 // 0: zlib (deflate)
}

// Image is an opened qcow2 file.
type Image struct {
	r        io.ReaderAt
	fileSize int64
	hdr      Header
	cluster  int64 // bytes
	l2Len    int64 // entries per L2 table
	l1       []uint64
}

// Probe says whether the file starts like a qcow2 image.
func Probe(r io.ReaderAt) bool {
	var m [4]byte
	_, err := r.ReadAt(m[:], 0)
	return err == nil && bytes.Equal(m[:], Magic)
}

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

func unsupported(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, a...))
}

// readAt reads exactly len(p) bytes at off, which the caller has checked
// lies inside the file; a file that shrank meanwhile is ErrCorrupt.
func (im *Image) readAt(p []byte, off int64) error {
	n, err := im.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		return corrupt("%d bytes at offset %d: the file ends first", len(p), off)
	}
	return fmt.Errorf("qcow2: reading %d bytes at %d: %w", len(p), off, err)
}

// inFile says whether [off, off+n) lies inside the file, without overflow.
func (im *Image) inFile(off uint64, n int64) bool {
	return n >= 0 && off <= uint64(im.fileSize) && uint64(n) <= uint64(im.fileSize)-off
}

// Open reads and checks the header and the L1 table of the qcow2 image
// r, which is fileSize bytes long.
func Open(r io.ReaderAt, fileSize int64) (*Image, error) {
	im := &Image{r: r, fileSize: fileSize}
	var h [v3HeaderLen + 1]byte
	if fileSize < v2HeaderLen {
		return nil, corrupt("file of %d bytes is shorter than a header", fileSize)
	}
	hl := min(int64(len(h)), fileSize)
	if err := im.readAt(h[:hl], 0); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	if !bytes.Equal(h[:4], Magic) {
		return nil, corrupt("no qcow2 magic")
	}
	hdr := Header{
		Version: be.Uint32(h[4:]), ClusterBits: be.Uint32(h[20:]), Size: be.Uint64(h[24:]),
		L1Size: be.Uint32(h[36:]), L1Offset: be.Uint64(h[40:]),
	}
	switch hdr.Version {
	case 2:
	case 3:
		if hl < v3HeaderLen {
			return nil, corrupt("version 3 header cut short")
		}
		hdr.Incompat = be.Uint64(h[72:])
		headerLen := be.Uint32(h[100:])
		if headerLen < v3HeaderLen || headerLen%8 != 0 {
			return nil, corrupt("header length %d", headerLen)
		}
		if headerLen > v3HeaderLen {
			if hl <= v3HeaderLen {
				return nil, corrupt("header cut short")
			}
			hdr.Compression = h[104]
		}
	default:
		return nil, unsupported("version %d (want 2 or 3)", hdr.Version)
	}
	if hdr.ClusterBits < minClusterBits || hdr.ClusterBits > maxClusterBits {
		return nil, corrupt("cluster bits %d (want %d to %d)", hdr.ClusterBits, minClusterBits, maxClusterBits)
	}
	if off, n := be.Uint64(h[8:]), be.Uint32(h[16:]); off != 0 || n != 0 {
		return nil, unsupported("the image has a backing file: convert it first (qemu-img convert -O qcow2 in.qcow2 out.qcow2)")
	}
	if m := be.Uint32(h[32:]); m != 0 {
		return nil, unsupported("the image is encrypted (method %d): decrypt it first", m)
	}
	if unknown := hdr.Incompat &^ knownIncompatFeatures; unknown != 0 {
		return nil, unsupported("incompatible features %#x", unknown)
	}
	switch {
	case hdr.Incompat&incompatCorrupt != 0:
		return nil, corrupt("QEMU marked the image corrupt (qemu-img check -r all repairs it)")
	case hdr.Incompat&incompatExternalData != 0:
		return nil, unsupported("the data is in an external file")
	case hdr.Incompat&incompatExtendedL2 != 0:
		return nil, unsupported("extended L2 entries (subclusters)")
	case hdr.Incompat&incompatCompression == 0 && hdr.Compression != 0:
		return nil, corrupt("compression type %d without its feature bit", hdr.Compression)
	case hdr.Compression != 0:
		return nil, unsupported("compression type %d (only zlib is read: qemu-img convert -c -o compression_type=zlib)", hdr.Compression)
	}
	if hdr.Size > MaxVirtualSize {
		return nil, unsupported("virtual size %d is over %d", hdr.Size, int64(MaxVirtualSize))
	}
	im.hdr = hdr
	im.cluster = 1 << hdr.ClusterBits
	im.l2Len = im.cluster / 8
	perL1 := uint64(im.cluster) * uint64(im.l2Len)
	need := (hdr.Size + perL1 - 1) / perL1
	if uint64(hdr.L1Size) < need {
		return nil, corrupt("L1 table of %d entries for a disk that needs %d", hdr.L1Size, need)
	}
	if uint64(hdr.L1Size)*8 > MaxL1Bytes {
		return nil, corrupt("L1 table of %d entries", hdr.L1Size)
	}
	// Only the entries the virtual size reaches are read; the rest are
	// never used.
	n := int64(need)
	if n > 0 {
		if hdr.L1Offset%uint64(im.cluster) != 0 || !im.inFile(hdr.L1Offset, n*8) {
			return nil, corrupt("L1 table at %d (%d entries) is misaligned or outside a file of %d bytes", hdr.L1Offset, n, fileSize)
		}
		raw := make([]byte, n*8)
		if err := im.readAt(raw, int64(hdr.L1Offset)); err != nil {
			return nil, err
		}
		im.l1 = make([]uint64, n)
		for i := range im.l1 {
			e := be.Uint64(raw[i*8:])
			if e&l1Reserved != 0 {
				return nil, corrupt("L1 entry %d has reserved bits set (%#x)", i, e)
			}
			off := e & offsetMask
			if off != 0 && (off%uint64(im.cluster) != 0 || !im.inFile(off, im.cluster)) {
				return nil, corrupt("L1 entry %d: L2 table at %d is misaligned or outside a file of %d bytes", i, off, fileSize)
			}
			im.l1[i] = off
		}
	}
	return im, nil
}

// Header returns what was read of the header.
func (im *Image) Header() Header { return im.hdr }

// Size is the virtual disk's size in bytes.
func (im *Image) Size() int64 { return int64(im.hdr.Size) }

// ClusterSize is the image's cluster size in bytes.
func (im *Image) ClusterSize() int64 { return im.cluster }

// NewReader returns the virtual disk as a stream of Size bytes: data
// clusters as stored, unallocated and zero clusters as zeros, compressed
// clusters inflated. A table or cluster found bad on the way ends the
// stream with ErrCorrupt.
func (im *Image) NewReader() io.Reader {
	return &reader{im: im, l2: make([]byte, im.cluster), buf: make([]byte, im.cluster), l2Index: -1}
}

type reader struct {
	im      *Image
	pos     int64  // virtual offset of the next byte Read returns
	l2Index int64  // which L1 entry l2 holds, -1: none
	l2      []byte // the current L2 table
	buf     []byte // the current cluster
	avail   []byte // what is left of buf to return
	comp    []byte // compressed bytes of one cluster, grown as needed
	err     error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(r.avail) == 0 {
		if r.pos >= r.im.Size() {
			return 0, io.EOF
		}
		if err := r.fill(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.avail)
	r.avail = r.avail[n:]
	return n, nil
}

// fill loads the cluster at r.pos into buf (cut to the virtual size).
func (r *reader) fill() error {
	im := r.im
	vc := r.pos / im.cluster // virtual cluster number
	l1i, l2i := vc/im.l2Len, vc%im.l2Len
	want := min(im.cluster, im.Size()-r.pos)
	out := r.buf[:want]
	r.pos += want
	r.avail = out
	l2off := im.l1[l1i]
	if l2off == 0 {
		clear(out)
		return nil
	}
	if r.l2Index != l1i {
		if err := im.readAt(r.l2, int64(l2off)); err != nil {
			return err
		}
		r.l2Index = l1i
	}
	e := binary.BigEndian.Uint64(r.l2[l2i*8:])
	if e&l2Compressed != 0 {
		return r.inflate(e, vc)
	}
	if e&l2StdReserved != 0 {
		return corrupt("L2 entry for cluster %d has reserved bits set (%#x)", vc, e)
	}
	off := e & offsetMask
	if e&l2ZeroFlag != 0 || off == 0 {
		if e&l2ZeroFlag != 0 && im.hdr.Version < 3 {
			return corrupt("zero flag on cluster %d of a version 2 image", vc)
		}
		clear(out)
		return nil
	}
	// Only the part of the cluster the virtual disk reaches must be in
	// the file: qemu-img may end the file inside the last cluster.
	if off%uint64(im.cluster) != 0 || !im.inFile(off, want) {
		return corrupt("cluster %d at %d is misaligned or outside a file of %d bytes", vc, off, im.fileSize)
	}
	return im.readAt(out, int64(off))
}

// inflate reads the compressed cluster of L2 entry e into out.
func (r *reader) inflate(e uint64, vc int64) error {
	im := r.im
	if e&copiedFlagMask != 0 {
		return corrupt("compressed cluster %d marked copied", vc)
	}
	// qcow2.txt: x = 62 - (cluster_bits - 8); bits 0..x-1 the host
	// offset, bits x..61 the number of further 512-byte sectors.
	x := 62 - (im.hdr.ClusterBits - 8)
	off := e & (1<<x - 1)
	sectors := (e>>x)&(1<<(im.hdr.ClusterBits-8)-1) + 1
	n := int64(sectors*512 - off%512)
	// The last compressed cluster's sector count may run past the end
	// of the file; what lies inside it must hold the whole stream.
	if off >= uint64(im.fileSize) {
		return corrupt("compressed cluster %d at %d is outside a file of %d bytes", vc, off, im.fileSize)
	}
	n = min(n, im.fileSize-int64(off))
	if int64(cap(r.comp)) < n {
		r.comp = make([]byte, n)
	}
	comp := r.comp[:n]
	if err := im.readAt(comp, int64(off)); err != nil {
		return err
	}
	full := r.buf[:im.cluster]
	zr := flate.NewReader(bytes.NewReader(comp))
	defer zr.Close()
	// out is the start of buf: a last cluster is cut to the disk's size.
	if _, err := io.ReadFull(zr, full); err != nil {
		return corrupt("compressed cluster %d does not inflate to %d bytes: %v", vc, im.cluster, err)
	}
	return nil
}
