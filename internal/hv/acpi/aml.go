package acpi

import (
	"encoding/binary"
	"strings"
)

// A minimal AML encoder (ACPI 6.5 §20.2): just the objects the DSDT needs,
// a Scope of Devices whose Names hold integers, strings, EISA IDs and
// resource templates, and a Package for \_S5. Every function returns the
// complete encoding of one object, so a parent measures its children by
// their length and its PkgLength is exact.
//
// The names and strings given to these functions are the package's own
// constants and names it formats from validated indices, never input
// from a guest; tests check each one against the AML grammar.

// AML opcodes and prefixes (§20.2.3, §20.2.5).
const (
	opZero          = 0x00
	opOne           = 0x01
	opName          = 0x08
	opBytePrefix    = 0x0a
	opWordPrefix    = 0x0b
	opDWordPrefix   = 0x0c
	opStringPrefix  = 0x0d
	opQWordPrefix   = 0x0e
	opScope         = 0x10
	opBuffer        = 0x11
	opPackage       = 0x12
	opDualNamePfx   = 0x2e
	opMultiNamePfx  = 0x2f
	opExtPrefix     = 0x5b
	opExtDevice     = 0x82 // after opExtPrefix
	opOnes          = 0xff
	rootChar        = '\\'
	parentPrefix    = '^'
	pkgLengthMaxOne = 0x3f
)

// pkgLength encodes the PkgLength of a package whose contents after the
// PkgLength are n bytes long (§20.2.4). The encoded value counts the
// PkgLength bytes themselves, which is why the size of the encoding is
// chosen first: one byte holds up to 63 in its low six bits; longer
// encodings put the byte count that follows in bits 7-6 of the lead byte,
// the lowest nibble in its bits 3-0, and 8 more bits in each following
// byte, up to 2^28-1. Build's DSDT stays far below that: validate allows
// at most 4 COM ports and 19 devices, under a hundred bytes each.
func pkgLength(n int) []byte {
	if n+1 <= pkgLengthMaxOne {
		return []byte{byte(n + 1)}
	}
	for follow := 1; follow <= 3; follow++ {
		total := n + 1 + follow
		if total < 1<<(4+8*follow) {
			b := make([]byte, 1+follow)
			b[0] = byte(follow<<6) | byte(total&0x0f)
			for i := 1; i <= follow; i++ {
				b[i] = byte(total >> (4 + 8*(i-1)))
			}
			return b
		}
	}
	return nil // unreachable for the sizes Build allows
}

// nameSeg pads a name of 1-4 characters to a NameSeg with trailing
// underscores (§20.2.2).
func nameSeg(s string) []byte {
	b := []byte("____")
	copy(b, s)
	return b
}

// nameString encodes a path such as `\_SB_`, `_HID` or `\_SB_.COM1`: an
// optional root character, then one, two (DualNamePrefix) or more
// (MultiNamePrefix) NameSegs.
func nameString(path string) []byte {
	var b []byte
	if strings.HasPrefix(path, `\`) {
		b = append(b, rootChar)
		path = path[1:]
	}
	segs := strings.Split(path, ".")
	switch len(segs) {
	case 1:
	case 2:
		b = append(b, opDualNamePfx)
	default:
		b = append(b, opMultiNamePfx, byte(len(segs)))
	}
	for _, s := range segs {
		b = append(b, nameSeg(s)...)
	}
	return b
}

// integer encodes v in the shortest form, as iasl does: ZeroOp, OneOp, or
// a Byte/Word/DWord/QWord prefix and the little-endian value.
func integer(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{opZero}
	case v == 1:
		return []byte{opOne}
	case v <= 0xff:
		return []byte{opBytePrefix, byte(v)}
	case v <= 0xffff:
		return binary.LittleEndian.AppendUint16([]byte{opWordPrefix}, uint16(v))
	case v <= 0xffff_ffff:
		return binary.LittleEndian.AppendUint32([]byte{opDWordPrefix}, uint32(v))
	}
	return binary.LittleEndian.AppendUint64([]byte{opQWordPrefix}, v)
}

// dword encodes v with a DWordPrefix whatever its size: an EISA ID is a
// 32-bit value, and a shorter form would change its type for no gain.
func dword(v uint32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{opDWordPrefix}, v)
}

// str encodes an ASCII string (characters 0x01-0x7F) with its NUL.
func str(s string) []byte {
	b := append([]byte{opStringPrefix}, s...)
	return append(b, 0)
}

// eisaID compresses a PNP ID such as "PNP0501" into the 32-bit EISA ID
// that ASL's EisaId() makes: the three letters, five bits each (A=1), in
// a 16-bit manufacturer code, then the four hex digits of the product
// number, both stored big-endian; the DWord is what those four bytes read
// as little-endian. id must be three capitals and four hex digits.
func eisaID(id string) uint32 {
	mfg := uint16(id[0]-'@')<<10 | uint16(id[1]-'@')<<5 | uint16(id[2]-'@')
	var prod uint16
	for _, c := range id[3:7] {
		d := uint16(c - '0')
		if c >= 'A' {
			d = uint16(c-'A') + 10
		}
		prod = prod<<4 | d
	}
	return binary.LittleEndian.Uint32([]byte{byte(mfg >> 8), byte(mfg), byte(prod >> 8), byte(prod)})
}

// name encodes Name(path, value) where value is an encoded data object.
func name(path string, value []byte) []byte {
	b := append([]byte{opName}, nameString(path)...)
	return append(b, value...)
}

// pkg wraps contents in op PkgLength (for Scope, Device, Buffer, Package).
func pkg(op []byte, contents ...[]byte) []byte {
	n := 0
	for _, c := range contents {
		n += len(c)
	}
	b := append(append([]byte{}, op...), pkgLength(n)...)
	for _, c := range contents {
		b = append(b, c...)
	}
	return b
}

// scope encodes Scope(path) { body... }.
func scope(path string, body ...[]byte) []byte {
	return pkg([]byte{opScope}, append([][]byte{nameString(path)}, body...)...)
}

// device encodes Device(seg) { body... }.
func device(seg string, body ...[]byte) []byte {
	return pkg([]byte{opExtPrefix, opExtDevice}, append([][]byte{nameString(seg)}, body...)...)
}

// buffer encodes Buffer() {data}: the BufferSize is the data's length.
func buffer(data []byte) []byte {
	return pkg([]byte{opBuffer}, integer(uint64(len(data))), data)
}

// pkgOf encodes Package() {elems...} (at most 255 elements).
func pkgOf(elems ...[]byte) []byte {
	return pkg([]byte{opPackage}, append([][]byte{{byte(len(elems))}}, elems...)...)
}

// Resource descriptors (§6.4). Small items have a one-byte tag holding
// their type and length; large items a tag byte and a 16-bit length.
const (
	tagIRQ        = 0x23 // small item 0x4, length 3 (with the flags byte)
	tagIO         = 0x47 // small item 0x8, length 7
	tagEnd        = 0x79 // small item 0xF, length 1
	tagMemory32Fx = 0x86 // large item 0x06
	tagExtIRQ     = 0x89 // large item 0x09

	// Interrupt Vector Flags of an Extended Interrupt descriptor
	// (§6.4.3.6): consumer in bit 0, edge in bit 1; active-low (bit 2),
	// shared (bit 3) and wake-capable (bit 4) stay clear.
	extIRQConsumer = 1 << 0
	extIRQEdge     = 1 << 1
	extIRQLow      = 1 << 2
	extIRQShared   = 1 << 3

	// IRQ information byte of an IRQ descriptor (§6.4.2.1): edge in bit
	// 0; active-low (bit 3) and shared (bit 4) stay clear.
	irqEdge   = 1 << 0
	irqLow    = 1 << 3
	irqShared = 1 << 4
)

// memory32Fixed is a read/write Memory32Fixed descriptor (§6.4.3.4).
func memory32Fixed(base, size uint32) []byte {
	b := []byte{tagMemory32Fx, 9, 0, 1} // length 9; bit 0: writable
	b = binary.LittleEndian.AppendUint32(b, base)
	return binary.LittleEndian.AppendUint32(b, size)
}

// extendedInterrupt is an Extended Interrupt descriptor (§6.4.3.6) for
// one interrupt that the device consumes, active-high and exclusive,
// without a resource source.
func extendedInterrupt(gsi uint32, level bool) []byte {
	flags := byte(extIRQConsumer)
	if !level {
		flags |= extIRQEdge
	}
	b := []byte{tagExtIRQ, 6, 0, flags, 1} // length 6: flags, count, one DWord
	return binary.LittleEndian.AppendUint32(b, gsi)
}

// ioPort is a 16-bit-decoded I/O Port descriptor (§6.4.2.5) for a fixed
// window: minimum and maximum base equal.
func ioPort(port uint16, length uint8) []byte {
	b := []byte{tagIO, 1} // bit 0: decodes 16 address bits
	b = binary.LittleEndian.AppendUint16(b, port)
	b = binary.LittleEndian.AppendUint16(b, port)
	return append(b, 1, length) // alignment 1: the window does not move
}

// irq is an IRQ descriptor (§6.4.2.1) for one ISA IRQ, edge-triggered,
// active-high, exclusive, written in its three-byte form so the flags are
// stated rather than implied.
func irq(n uint8) []byte {
	mask := uint16(1) << n
	return []byte{tagIRQ, byte(mask), byte(mask >> 8), irqEdge}
}

// resourceTemplate is ResourceTemplate() {descs...}: a Buffer of the
// descriptors and an End Tag whose checksum makes the sum of every byte
// of the template zero (§6.4.2.9). A zero checksum would also be valid
// ("treated as if the checksum operation succeeded"), but a real one lets
// a reader that does check it find a corrupted template.
func resourceTemplate(descs ...[]byte) []byte {
	var b []byte
	for _, d := range descs {
		b = append(b, d...)
	}
	b = append(b, tagEnd)
	return buffer(append(b, -sum8(b)))
}

// sum8 is the byte sum that ACPI checksums are defined on.
func sum8(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}
