package acpi

import (
	"fmt"
	"slices"
	"strings"
)

// A decoder for the subset of AML that the encoder in aml.go writes:
// Scope and Device objects holding Names whose values are integers,
// strings, buffers and packages. Anything else (a Method, an operator, a
// field) is reported as unsupported rather than skipped, since nothing
// can tell its length without decoding it. Every PkgLength is checked to
// stay inside its parent, nesting is bounded, and no size read from the
// input is ever allocated.

// maxAMLDepth bounds the nesting of Scopes, Devices and Packages, so a
// hostile DSDT cannot make the decoder recurse as deep as it is long.
const maxAMLDepth = 16

type amlKind uint8

const (
	amlInteger amlKind = iota + 1
	amlString
	amlBuffer
	amlPackage
)

// amlValue is a decoded data object.
type amlValue struct {
	kind  amlKind
	n     uint64     // amlInteger
	s     string     // amlString
	buf   []byte     // amlBuffer: its initializer, which aliases the input
	elems []amlValue // amlPackage
}

// amlDevice is a Device object and the Names declared directly in it.
type amlDevice struct {
	path  string
	names map[string]amlValue // by NameSeg
}

// namespace is what a definition block declares.
type namespace struct {
	root    map[string]amlValue // Names outside any Device, by absolute path
	devices []*amlDevice        // in AML order
}

func decodeAML(b []byte) (*namespace, error) {
	ns := &namespace{root: map[string]amlValue{}}
	p := amlParser{b: b, ns: ns}
	if err := p.termList(0, len(b), nil, nil, 0); err != nil {
		return nil, err
	}
	return ns, nil
}

type amlParser struct {
	b  []byte
	ns *namespace
}

func (p *amlParser) errorf(pos int, format string, args ...any) error {
	return malformed("AML at offset %d: %s", pos, fmt.Sprintf(format, args...))
}

// termList decodes the objects in b[pos:end], declared in scope (a list
// of NameSegs from the root) and, if dev is not nil, directly inside that
// device.
func (p *amlParser) termList(pos, end int, scope []string, dev *amlDevice, depth int) error {
	if depth > maxAMLDepth {
		return p.errorf(pos, "nested deeper than %d", maxAMLDepth)
	}
	for pos < end {
		switch op := p.b[pos]; {
		case op == opName:
			segs, next, err := p.nameString(pos+1, end, scope)
			if err != nil {
				return err
			}
			v, next, err := p.dataObject(next, end, depth)
			if err != nil {
				return err
			}
			if err := p.declare(pos, scope, segs, dev, v); err != nil {
				return err
			}
			pos = next

		case op == opScope:
			pkgEnd, next, err := p.pkgLength(pos+1, end)
			if err != nil {
				return err
			}
			segs, next, err := p.nameString(next, pkgEnd, scope)
			if err != nil {
				return err
			}
			if err := p.termList(next, pkgEnd, segs, nil, depth+1); err != nil {
				return err
			}
			pos = pkgEnd

		case op == opExtPrefix && pos+1 < end && p.b[pos+1] == opExtDevice:
			pkgEnd, next, err := p.pkgLength(pos+2, end)
			if err != nil {
				return err
			}
			segs, next, err := p.nameString(next, pkgEnd, scope)
			if err != nil {
				return err
			}
			if len(segs) == 0 {
				return p.errorf(pos, "a Device named the root")
			}
			d := &amlDevice{path: pathString(segs), names: map[string]amlValue{}}
			p.ns.devices = append(p.ns.devices, d)
			if err := p.termList(next, pkgEnd, segs, d, depth+1); err != nil {
				return err
			}
			pos = pkgEnd

		default:
			return p.errorf(pos, "opcode %#02x is not decoded", op)
		}
	}
	return nil
}

// declare records a Name: in dev if it is declared directly in the device
// (a single NameSeg there), otherwise in the root map by absolute path.
func (p *amlParser) declare(pos int, scope, segs []string, dev *amlDevice, v amlValue) error {
	if len(segs) == 0 {
		return p.errorf(pos, "a Name named the root")
	}
	if dev != nil && len(segs) == len(scope)+1 && slices.Equal(segs[:len(scope)], scope) {
		seg := segs[len(segs)-1]
		if _, dup := dev.names[seg]; dup {
			return p.errorf(pos, "%s.%s declared twice", dev.path, seg)
		}
		dev.names[seg] = v
		return nil
	}
	path := pathString(segs)
	if _, dup := p.ns.root[path]; dup {
		return p.errorf(pos, "%s declared twice", path)
	}
	p.ns.root[path] = v
	return nil
}

func pathString(segs []string) string { return `\` + strings.Join(segs, ".") }

// pkgLength decodes the PkgLength at pos (§20.2.4) and returns where the
// package ends (the length counts from pos) and where its contents start.
func (p *amlParser) pkgLength(pos, end int) (pkgEnd, next int, err error) {
	if pos >= end {
		return 0, 0, p.errorf(pos, "PkgLength cut short")
	}
	lead := p.b[pos]
	follow := int(lead >> 6)
	if end-pos < 1+follow {
		return 0, 0, p.errorf(pos, "PkgLength cut short")
	}
	n := int(lead & 0x3f)
	if follow > 0 {
		if lead&0x30 != 0 {
			return 0, 0, p.errorf(pos, "PkgLength lead byte %#02x has reserved bits set", lead)
		}
		n = int(lead & 0x0f)
		for i := 1; i <= follow; i++ {
			n |= int(p.b[pos+i]) << (4 + 8*(i-1))
		}
	}
	if n < 1+follow || n > end-pos {
		return 0, 0, p.errorf(pos, "PkgLength %d does not fit in its %d bytes", n, end-pos)
	}
	return pos + n, pos + 1 + follow, nil
}

// nameString decodes a NameString (§20.2.2) relative to scope and returns
// the absolute path as NameSegs.
func (p *amlParser) nameString(pos, end int, scope []string) ([]string, int, error) {
	start := pos
	var abs []string
	switch {
	case pos < end && p.b[pos] == rootChar:
		pos++
	default:
		abs = append(abs, scope...)
		for pos < end && p.b[pos] == parentPrefix {
			if len(abs) == 0 {
				return nil, 0, p.errorf(start, "name goes above the root")
			}
			abs = abs[:len(abs)-1]
			pos++
		}
	}
	if pos >= end {
		return nil, 0, p.errorf(start, "name cut short")
	}
	count := 1
	switch p.b[pos] {
	case 0x00: // NullName
		return abs, pos + 1, nil
	case opDualNamePfx:
		count, pos = 2, pos+1
	case opMultiNamePfx:
		if pos+1 >= end || p.b[pos+1] == 0 {
			return nil, 0, p.errorf(start, "MultiNamePath without segments")
		}
		count, pos = int(p.b[pos+1]), pos+2
	}
	if end-pos < 4*count {
		return nil, 0, p.errorf(start, "name cut short")
	}
	for range count {
		seg := p.b[pos : pos+4]
		for i, c := range seg {
			lead := c >= 'A' && c <= 'Z' || c == '_'
			if !lead && (i == 0 || c < '0' || c > '9') {
				return nil, 0, p.errorf(pos, "NameSeg %q is not a name", seg)
			}
		}
		abs = append(abs, string(seg))
		pos += 4
	}
	return abs, pos, nil
}

// dataObject decodes an integer, string, buffer or package.
func (p *amlParser) dataObject(pos, end, depth int) (amlValue, int, error) {
	if pos >= end {
		return amlValue{}, 0, p.errorf(pos, "value cut short")
	}
	fixed := func(n int) (uint64, int, error) {
		if end-pos-1 < n {
			return 0, 0, p.errorf(pos, "integer cut short")
		}
		var v uint64
		for i := n; i > 0; i-- {
			v = v<<8 | uint64(p.b[pos+i])
		}
		return v, pos + 1 + n, nil
	}
	var v uint64
	var next int
	var err error
	switch p.b[pos] {
	case opZero:
		return amlValue{kind: amlInteger, n: 0}, pos + 1, nil
	case opOne:
		return amlValue{kind: amlInteger, n: 1}, pos + 1, nil
	case opOnes:
		return amlValue{kind: amlInteger, n: ^uint64(0)}, pos + 1, nil
	case opBytePrefix:
		v, next, err = fixed(1)
	case opWordPrefix:
		v, next, err = fixed(2)
	case opDWordPrefix:
		v, next, err = fixed(4)
	case opQWordPrefix:
		v, next, err = fixed(8)
	case opStringPrefix:
		for i := pos + 1; i < end; i++ {
			c := p.b[i]
			if c == 0 {
				return amlValue{kind: amlString, s: string(p.b[pos+1 : i])}, i + 1, nil
			}
			if c > 0x7f {
				return amlValue{}, 0, p.errorf(i, "string byte %#02x is not ASCII", c)
			}
		}
		return amlValue{}, 0, p.errorf(pos, "string without its NUL")
	case opBuffer:
		return p.buffer(pos, end, depth)
	case opPackage:
		return p.pkg(pos, end, depth)
	default:
		return amlValue{}, 0, p.errorf(pos, "data object %#02x is not decoded", p.b[pos])
	}
	if err != nil {
		return amlValue{}, 0, err
	}
	return amlValue{kind: amlInteger, n: v}, next, nil
}

// buffer decodes DefBuffer: PkgLength, BufferSize, then the initializer.
// The BufferSize may exceed the initializer (the rest is zeros, and is
// not materialized here); it may not be smaller.
func (p *amlParser) buffer(pos, end, depth int) (amlValue, int, error) {
	pkgEnd, next, err := p.pkgLength(pos+1, end)
	if err != nil {
		return amlValue{}, 0, err
	}
	size, next, err := p.dataObject(next, pkgEnd, depth+1)
	if err != nil {
		return amlValue{}, 0, err
	}
	if size.kind != amlInteger {
		return amlValue{}, 0, p.errorf(pos, "BufferSize is not a constant integer")
	}
	init := p.b[next:pkgEnd]
	if size.n < uint64(len(init)) {
		return amlValue{}, 0, p.errorf(pos, "BufferSize %d is smaller than its %d-byte initializer", size.n, len(init))
	}
	return amlValue{kind: amlBuffer, buf: init}, pkgEnd, nil
}

// pkg decodes DefPackage: PkgLength, NumElements, then at most that many
// elements.
func (p *amlParser) pkg(pos, end, depth int) (amlValue, int, error) {
	if depth+1 > maxAMLDepth {
		return amlValue{}, 0, p.errorf(pos, "nested deeper than %d", maxAMLDepth)
	}
	pkgEnd, next, err := p.pkgLength(pos+1, end)
	if err != nil {
		return amlValue{}, 0, err
	}
	if next >= pkgEnd {
		return amlValue{}, 0, p.errorf(pos, "Package without NumElements")
	}
	num := int(p.b[next])
	v := amlValue{kind: amlPackage}
	for next++; next < pkgEnd; {
		if len(v.elems) == num {
			return amlValue{}, 0, p.errorf(pos, "Package has more than its %d elements", num)
		}
		var e amlValue
		if e, next, err = p.dataObject(next, pkgEnd, depth+1); err != nil {
			return amlValue{}, 0, err
		}
		v.elems = append(v.elems, e)
	}
	return v, pkgEnd, nil
}

// summary is the device's path, _HID and _UID.
func (d *amlDevice) summary() (Device, error) {
	dev := Device{Path: d.path}
	if v, ok := d.names["_HID"]; ok {
		switch {
		case v.kind == amlString:
			dev.HID = v.s
		case v.kind == amlInteger && v.n <= 0xffff_ffff:
			dev.HID = eisaString(uint32(v.n))
		default:
			return Device{}, malformed("%s: _HID is neither a string nor an EISA ID", d.path)
		}
	}
	if v, ok := d.names["_UID"]; ok {
		if v.kind != amlInteger {
			return Device{}, malformed("%s: _UID is not an integer", d.path)
		}
		dev.UID = v.n
	}
	return dev, nil
}

// eisaString expands a compressed EISA ID (see eisaID) to its seven
// characters.
func eisaString(v uint32) string {
	b := []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
	mfg := uint16(b[0])<<8 | uint16(b[1])
	const hex = "0123456789ABCDEF"
	return string([]byte{
		'@' + byte(mfg>>10&0x1f), '@' + byte(mfg>>5&0x1f), '@' + byte(mfg&0x1f),
		hex[b[2]>>4], hex[b[2]&0xf], hex[b[3]>>4], hex[b[3]&0xf],
	})
}

// resources returns the descriptors of the device's _CRS.
func (d *amlDevice) resources() ([]resource, error) {
	v, ok := d.names["_CRS"]
	if !ok || v.kind != amlBuffer {
		return nil, malformed("%s: no _CRS buffer", d.path)
	}
	res, err := parseResources(v.buf)
	if err != nil {
		return nil, fmt.Errorf("%s._CRS: %w", d.path, err)
	}
	return res, nil
}

// virtioMMIO decodes the _CRS of an LNRO0005 device: one Memory32Fixed
// and one Extended Interrupt, consumed, active-high and exclusive (all a
// VirtioMMIO can say).
func (d *amlDevice) virtioMMIO() (VirtioMMIO, error) {
	res, err := d.resources()
	if err != nil {
		return VirtioMMIO{}, err
	}
	var v VirtioMMIO
	var haveMem, haveIRQ bool
	for _, r := range res {
		switch {
		case r.large && r.name == tagMemory32Fx&0x7f && len(r.data) == 9 && !haveMem:
			haveMem = true
			v.Base = uint64(le.Uint32(r.data[1:]))
			v.Size = uint64(le.Uint32(r.data[5:]))
		case r.large && r.name == tagExtIRQ&0x7f && len(r.data) == 6 && r.data[1] == 1 && !haveIRQ:
			flags := r.data[0]
			if flags&extIRQConsumer == 0 || flags&(extIRQLow|extIRQShared) != 0 {
				return VirtioMMIO{}, malformed("%s: interrupt flags %#02x are not consumer, active-high, exclusive", d.path, flags)
			}
			haveIRQ = true
			v.GSI = le.Uint32(r.data[2:])
			v.Level = flags&extIRQEdge == 0
		default:
			return VirtioMMIO{}, malformed("%s: unexpected resource (large %v, item %#02x, %d bytes)", d.path, r.large, r.name, len(r.data))
		}
	}
	if !haveMem || !haveIRQ {
		return VirtioMMIO{}, malformed("%s: _CRS lacks its memory window or its interrupt", d.path)
	}
	return v, nil
}

// serial decodes the _CRS of a PNP0501 device: one fixed I/O window and
// one edge-triggered, active-high, exclusive ISA IRQ.
func (d *amlDevice) serial() (Serial, error) {
	res, err := d.resources()
	if err != nil {
		return Serial{}, err
	}
	var s Serial
	var haveIO, haveIRQ bool
	for _, r := range res {
		switch {
		case !r.large && r.name == tagIO>>3&0xf && len(r.data) == 7 && !haveIO:
			lo, hi := le.Uint16(r.data[1:]), le.Uint16(r.data[3:])
			if lo != hi || r.data[6] != uartWindow {
				return Serial{}, malformed("%s: I/O window %#x-%#x of %d ports is not a UART's", d.path, lo, hi, r.data[6])
			}
			haveIO = true
			s.Port = lo
		case !r.large && r.name == tagIRQ>>3&0xf && (len(r.data) == 2 || len(r.data) == 3) && !haveIRQ:
			mask := le.Uint16(r.data)
			if mask == 0 || mask&(mask-1) != 0 {
				return Serial{}, malformed("%s: IRQ mask %#04x does not name one IRQ", d.path, mask)
			}
			// Without the information byte the IRQ is edge, active-high,
			// exclusive, which is the only kind a Serial describes.
			if len(r.data) == 3 {
				if f := r.data[2]; f&irqEdge == 0 || f&(irqLow|irqShared) != 0 {
					return Serial{}, malformed("%s: IRQ flags %#02x are not edge, active-high, exclusive", d.path, f)
				}
			}
			haveIRQ = true
			for mask>>1 != 0 {
				mask >>= 1
				s.IRQ++
			}
		default:
			return Serial{}, malformed("%s: unexpected resource (large %v, item %#02x, %d bytes)", d.path, r.large, r.name, len(r.data))
		}
	}
	if !haveIO || !haveIRQ {
		return Serial{}, malformed("%s: _CRS lacks its I/O window or its IRQ", d.path)
	}
	return s, nil
}

// resource is one resource descriptor: its item name (small items: bits
// 6-3 of the tag; large items: bits 6-0) and its data after the tag and,
// for large items, the length.
type resource struct {
	large bool
	name  byte
	data  []byte
}

// parseResources splits a resource template (§6.4) into descriptors up to
// its End Tag, which must be the template's last two bytes and whose
// checksum, unless zero, must make the template sum to zero.
func parseResources(b []byte) ([]resource, error) {
	var res []resource
	for pos := 0; pos < len(b); {
		tag := b[pos]
		if tag&0x80 == 0 {
			n := int(tag & 7)
			if len(b)-pos-1 < n {
				return nil, malformed("resource at %d cut short", pos)
			}
			if tag>>3&0xf == tagEnd>>3&0xf {
				if n != 1 || pos+2 != len(b) {
					return nil, malformed("End Tag at %d is not the template's last 2 bytes", pos)
				}
				if b[pos+1] != 0 && sum8(b) != 0 {
					return nil, fmt.Errorf("%w: resource template sums to %#02x", ErrChecksum, sum8(b))
				}
				return res, nil
			}
			res = append(res, resource{name: tag >> 3 & 0xf, data: b[pos+1 : pos+1+n]})
			pos += 1 + n
			continue
		}
		if len(b)-pos < 3 {
			return nil, malformed("resource at %d cut short", pos)
		}
		n := int(le.Uint16(b[pos+1:]))
		if len(b)-pos-3 < n {
			return nil, malformed("resource at %d cut short", pos)
		}
		res = append(res, resource{large: true, name: tag & 0x7f, data: b[pos+3 : pos+3+n]})
		pos += 3 + n
	}
	return nil, malformed("resource template without an End Tag")
}
