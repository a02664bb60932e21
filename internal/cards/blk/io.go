package blk

// Where the bytes of a read or a write go. The backing file is opened
// O_DIRECT (direct) or not (the host page cache); on the page cache the
// file is also mapped, and each transfer goes through the mapping or
// through system calls, whichever is measured cheaper for its direction
// and size on this host (choose.go); a file that cannot be mapped always
// uses system calls.
//
//	path            plaintext                     encrypted (AES-XTS, per 512-byte sector)
//	--------------  ----------------------------  ----------------------------------------------
//	direct          preadv/pwritev straight       read: preadv into guest memory, decrypt there
//	(O_DIRECT)      between the file and guest    in place; write: encrypt into the bounce
//	                memory; unaligned segments    buffer, pwrite it (the guest's buffer is never
//	                through the bounce buffer     modified); unaligned segments bounce both ways
//	mapped          one copy between the mapping  one pass of the cipher between the mapping and
//	(page cache)    and guest memory              guest memory
//	                writes only to pages in the page cache (mincore); others take pread/pwrite
//	pread           preadv/pwritev straight       read: pread into the bounce buffer, decrypt into
//	(page cache)    between the file and guest    guest memory; write: encrypt into the bounce
//	                memory                        buffer, pwrite it
//
// Encrypted segments that are not whole sectors never go through the
// mapping (each segment is encrypted on its own); they take the bounce
// buffer.

import (
	"errors"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

var errShort = errors.New("blk: short transfer")

// read fills iov from the device starting at sector. On the page cache
// it takes the path measured cheaper (pageCache). On O_DIRECT, plaintext
// volumes read straight into guest memory; encrypted ones do too when
// every segment is whole, aligned sectors, and decrypt there in place: the
// disk writes the guest's buffer once and the cipher passes over it once.
// The guest's buffer holds the ciphertext of its own data until its own
// request completes, which tells it nothing it cannot see in plaintext
// anyway. Other segments go through the bounce buffer.
func (d *Device) read(qs *queueState, iov [][]byte, sector, total uint64) error {
	if d.mappable(iov) {
		return d.pageCache(qs, iov, sector, total, false)
	}
	return d.readFile(qs, iov, sector, total)
}

// readFile reads with system calls (see read).
func (d *Device) readFile(qs *queueState, iov [][]byte, sector, total uint64) error {
	off := int64(sector * SectorSize)
	straight := !d.direct || memAligned(iov) // segments the file can take I/O into
	if d.cfg.Cipher == nil {
		if straight {
			return preadvFull(d.cfg.File, iov, off)
		}
		return d.bounceRead(qs, iov, off)
	}
	if d.direct && straight { // memAligned: whole, aligned sectors
		return d.crypt(transfer{iov: iov, sector: sector})
	}
	bounce := qs.buffer(total)
	if total <= uint64(len(bounce)) && sectorAligned(iov) {
		return d.crypt(transfer{iov: iov, buf: bounce[:total], sector: sector})
	}
	for done := uint64(0); done < total; {
		chunk := min(total-done, uint64(len(bounce)))
		buf := bounce[:chunk]
		if err := preadFull(d.cfg.File, buf, off+int64(done)); err != nil {
			return err
		}
		if err := d.cfg.Cipher.DecryptSectors(buf, buf, sector+done/SectorSize, SectorSize); err != nil {
			return err
		}
		scatterAt(iov, done, buf)
		done += chunk
	}
	return nil
}

// bounceRead and bounceWrite move a plaintext transfer through the
// (aligned) bounce buffer, for guest segments O_DIRECT cannot take.
func (d *Device) bounceRead(qs *queueState, iov [][]byte, off int64) error {
	total := totalLen(iov)
	bounce := qs.buffer(total)
	for done := uint64(0); done < total; {
		buf := bounce[:min(total-done, uint64(len(bounce)))]
		if err := preadFull(d.cfg.File, buf, off+int64(done)); err != nil {
			return err
		}
		scatterAt(iov, done, buf)
		done += uint64(len(buf))
	}
	return nil
}

func (d *Device) bounceWrite(qs *queueState, iov [][]byte, off int64) error {
	total := totalLen(iov)
	bounce := qs.buffer(total)
	for done := uint64(0); done < total; {
		buf := bounce[:min(total-done, uint64(len(bounce)))]
		gather(buf, iov, done)
		if err := pwriteFull(d.cfg.File, buf, off+int64(done)); err != nil {
			return err
		}
		done += uint64(len(buf))
	}
	return nil
}

// sectorAligned tells whether every segment is a whole number of sectors,
// so each can be encrypted or decrypted on its own.
func sectorAligned(iov [][]byte) bool {
	for _, seg := range iov {
		if len(seg)%SectorSize != 0 {
			return false
		}
	}
	return true
}

// write stores iov at sector: on the page cache by the path measured
// cheaper (pageCache); otherwise, and for encrypted segments that are not
// whole sectors, encrypted volumes encrypt from guest memory into the
// bounce buffer (the guest's buffer is never modified) and write it.
func (d *Device) write(qs *queueState, iov [][]byte, sector, total uint64) error {
	if d.mappable(iov) {
		return d.pageCache(qs, iov, sector, total, true)
	}
	return d.writeFile(qs, iov, sector, total)
}

// writeFile writes with system calls (see write).
func (d *Device) writeFile(qs *queueState, iov [][]byte, sector, total uint64) error {
	off := int64(sector * SectorSize)
	if d.cfg.Cipher == nil {
		if !d.direct || memAligned(iov) {
			return pwritevFull(d.cfg.File, iov, off)
		}
		return d.bounceWrite(qs, iov, off)
	}
	bounce := qs.buffer(total)
	if total <= uint64(len(bounce)) && sectorAligned(iov) {
		return d.crypt(transfer{iov: iov, buf: bounce[:total], sector: sector, write: true})
	}
	for done := uint64(0); done < total; {
		chunk := min(total-done, uint64(len(bounce)))
		buf := bounce[:chunk]
		gather(buf, iov, done)
		if err := d.cfg.Cipher.EncryptSectors(buf, buf, sector+done/SectorSize, SectorSize); err != nil {
			return err
		}
		if err := pwriteFull(d.cfg.File, buf, off+int64(done)); err != nil {
			return err
		}
		done += chunk
	}
	return nil
}

// discard serves a checked DISCARD or WRITE_ZEROES segment. Plaintext
// volumes punch holes (reads give zeros). Encrypted volumes: a discard
// punches a hole too (its content becomes undefined, as with dm-crypt),
// while write-zeroes writes encrypted zeros, since a hole would decrypt to
// noise.
func (d *Device) discard(qs *queueState, seg segment, zeroes bool) error {
	if zeroes && d.cfg.Cipher != nil {
		return d.writeZeroes(qs, seg.sector, seg.count)
	}
	off, length := int64(seg.sector*SectorSize), int64(seg.count*SectorSize)
	err := unix.Fallocate(int(d.cfg.File.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if err != nil && !zeroes && errors.Is(err, unix.EOPNOTSUPP) {
		err = nil // a discard is a hint
	}
	return err
}

func (d *Device) writeZeroes(qs *queueState, sector, count uint64) error {
	for count > 0 {
		bounce := qs.buffer(count * SectorSize)
		k := min(count, uint64(len(bounce))/SectorSize)
		buf := bounce[:k*SectorSize]
		clear(buf)
		if err := d.cfg.Cipher.EncryptSectors(buf, buf, sector, SectorSize); err != nil {
			return err
		}
		if err := pwriteFull(d.cfg.File, buf, int64(sector*SectorSize)); err != nil {
			return err
		}
		sector += k
		count -= k
	}
	return nil
}

func preadFull(f *os.File, b []byte, off int64) error { return full(f, b, off, unix.Pread) }

func pwriteFull(f *os.File, b []byte, off int64) error { return full(f, b, off, unix.Pwrite) }

// full repeats a positioned read or write until all of b has moved.
func full(f *os.File, b []byte, off int64, op func(int, []byte, int64) (int, error)) error {
	for len(b) > 0 {
		n, err := op(int(f.Fd()), b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errShort
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// preadvFull and pwritevFull move whole scatter lists with one system call
// when they can, finishing a short transfer segment by segment.
func preadvFull(f *os.File, iov [][]byte, off int64) error {
	return vectored(f, iov, off, unix.Preadv, preadFull)
}

func pwritevFull(f *os.File, iov [][]byte, off int64) error {
	return vectored(f, iov, off, unix.Pwritev, pwriteFull)
}

func vectored(f *os.File, iov [][]byte, off int64,
	vec func(int, [][]byte, int64) (int, error), one func(*os.File, []byte, int64) error) error {
	n := 0
	if len(iov) <= 1024 { // IOV_MAX
		var err error
		for {
			n, err = vec(int(f.Fd()), iov, off)
			if err != unix.EINTR {
				break
			}
		}
		if err != nil {
			return err
		}
	}
	// Finish whatever the vectored call did not move.
	for _, b := range iov {
		if n >= len(b) {
			n -= len(b)
			off += int64(len(b))
			continue
		}
		if err := one(f, b[n:], off+int64(n)); err != nil {
			return err
		}
		off += int64(len(b))
		n = 0
	}
	return nil
}

func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// transfer is an encrypted transfer of whole-sector guest segments, and
// where the ciphertext is: in buf (the bounce buffer, or with inFile the
// mapped file itself), or for a read in place in the guest's segments
// (buf nil).
type transfer struct {
	iov    [][]byte
	buf    []byte
	sector uint64
	write  bool
	inFile bool
}

// crypt does t: for a write, encrypt each segment from guest memory
// into the bounce buffer (the guest's buffer is never modified) and write
// it; for a read, read the ciphertext (into the bounce buffer, or into the
// guest's segments when t.buf is nil) and decrypt each segment into guest
// memory. When t.buf is the mapped file there is nothing to read or write:
// the cipher goes straight between the file's pages and guest memory.
func (d *Device) crypt(t transfer) (err error) {
	if t.inFile {
		defer d.catchFault(&err, debug.SetPanicOnFault(true))
	}
	off := int64(t.sector * SectorSize)
	if !t.write && !t.inFile {
		if t.buf == nil {
			err = preadvFull(d.cfg.File, t.iov, off)
		} else {
			err = preadFull(d.cfg.File, t.buf, off)
		}
		if err != nil {
			return err
		}
	}
	o := uint64(0)
	for _, seg := range t.iov {
		n := uint64(len(seg))
		switch {
		case t.write:
			err = d.cfg.Cipher.EncryptSectors(t.buf[o:o+n], seg, t.sector+o/SectorSize, SectorSize)
		case t.buf == nil:
			err = d.cfg.Cipher.DecryptSectors(seg, seg, t.sector+o/SectorSize, SectorSize)
		default:
			err = d.cfg.Cipher.DecryptSectors(seg, t.buf[o:o+n], t.sector+o/SectorSize, SectorSize)
		}
		if err != nil {
			return err
		}
		o += n
	}
	if t.write && !t.inFile {
		return pwriteFull(d.cfg.File, t.buf, off)
	}
	return nil
}

// mappable tells whether a transfer can go through the mapped file: the
// file is mapped, and an encrypted transfer's segments are whole sectors
// (each is encrypted on its own).
func (d *Device) mappable(iov [][]byte) bool {
	return d.mapped != nil && (d.cfg.Cipher == nil || sectorAligned(iov))
}

// pageCache moves a transfer on a mapped file by the path its chooser
// picks, and times it for the chooser. A write goes through the mapping
// only where every page is in the page cache (see resident); otherwise it
// takes pwrite, untimed: it is not the path that was picked.
func (d *Device) pageCache(qs *queueState, iov [][]byte, sector, total uint64, write bool) error {
	dir := 0
	if write {
		dir = 1
	}
	c := &qs.choice[dir][sizeClass(total)]
	p := c.pick()
	start := time.Now()
	var err error
	switch {
	case p == pathMapped && (!write || d.resident(qs, sector*SectorSize, total)):
		qs.mappedOps.Add(1)
		err = d.mappedIO(iov, sector, total, write)
	case write:
		err = d.writeFile(qs, iov, sector, total)
		if p == pathMapped {
			d.Metrics.addPath(dir, pathSyscall, total)
			return err
		}
	default:
		err = d.readFile(qs, iov, sector, total)
	}
	if err == nil {
		c.observe(p, total, time.Since(start).Nanoseconds())
	}
	d.Metrics.addPath(dir, p, total)
	return err
}

// mappedIO moves a transfer of total bytes between guest memory and the
// mapped file: a copy for a plaintext volume, one pass of the cipher for an
// encrypted one.
func (d *Device) mappedIO(iov [][]byte, sector, total uint64, write bool) (err error) {
	if total == 0 {
		return nil
	}
	file := d.mapped[sector*SectorSize : sector*SectorSize+total]
	if d.cfg.Cipher != nil {
		return d.crypt(transfer{iov: iov, buf: file, sector: sector, write: write, inFile: true})
	}
	defer d.catchFault(&err, debug.SetPanicOnFault(true))
	if write {
		gather(file, iov, 0)
	} else {
		scatterAt(iov, 0, file)
	}
	return nil
}

// isDirect tells whether f was opened with O_DIRECT.
func isDirect(f *os.File) bool {
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	return err == nil && flags&unix.O_DIRECT != 0
}

// scatter copies src into the buffers of iov and returns the bytes copied.
func scatter(iov [][]byte, src []byte) int {
	n := 0
	for _, b := range iov {
		if n == len(src) {
			break
		}
		n += copy(b, src[n:])
	}
	return n
}

// gather copies from the buffers of iov, starting skip bytes in, into dst.
func gather(dst []byte, iov [][]byte, skip uint64) {
	n := 0
	for _, b := range iov {
		if skip >= uint64(len(b)) {
			skip -= uint64(len(b))
			continue
		}
		n += copy(dst[n:], b[skip:])
		skip = 0
		if n == len(dst) {
			return
		}
	}
}

// scatterAt copies src into iov starting skip bytes in.
func scatterAt(iov [][]byte, skip uint64, src []byte) {
	n := 0
	for _, b := range iov {
		if skip >= uint64(len(b)) {
			skip -= uint64(len(b))
			continue
		}
		n += copy(b[skip:], src[n:])
		skip = 0
		if n == len(src) {
			return
		}
	}
}
