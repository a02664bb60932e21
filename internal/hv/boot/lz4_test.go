package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const lz4LegacyMagic = 0x184c2102

var errLZ4 = errors.New("lz4: corrupt input")

// unlz4Legacy decompresses an LZ4 legacy frame as the kernel's build makes
// it (lz4 -l, then the uncompressed size appended as 4 bytes): the magic,
// then blocks each prefixed by its compressed length. It is test code, to
// get at the vmlinux inside a Debian bzImage without a tool on the host.
func unlz4Legacy(in []byte) ([]byte, error) {
	if len(in) < 8 || binary.LittleEndian.Uint32(in) != lz4LegacyMagic {
		return nil, fmt.Errorf("%w: no legacy frame magic", errLZ4)
	}
	want := binary.LittleEndian.Uint32(in[len(in)-4:])
	in = in[4 : len(in)-4]
	out := make([]byte, 0, want)
	for len(in) > 0 {
		if len(in) < 4 {
			return nil, fmt.Errorf("%w: %d stray bytes", errLZ4, len(in))
		}
		n := binary.LittleEndian.Uint32(in)
		in = in[4:]
		if n == lz4LegacyMagic { // a concatenated frame
			continue
		}
		if uint64(n) > uint64(len(in)) {
			return nil, fmt.Errorf("%w: block of %d bytes, %d left", errLZ4, n, len(in))
		}
		var err error
		if out, err = lz4Block(out, in[:n]); err != nil {
			return nil, err
		}
		in = in[n:]
	}
	if uint64(len(out)) != uint64(want) {
		return nil, fmt.Errorf("%w: %d bytes out, the trailer says %d", errLZ4, len(out), want)
	}
	return out, nil
}

// lz4Block appends the decompression of one LZ4 block to out. A block is
// sequences of a token (literal length, match length), literals, and a
// 2-byte back offset; the last sequence has literals only.
func lz4Block(out, in []byte) ([]byte, error) {
	length := func(i *int, n int) (int, error) {
		if n != 15 {
			return n, nil
		}
		for {
			if *i >= len(in) {
				return 0, fmt.Errorf("%w: length runs off the block", errLZ4)
			}
			b := in[*i]
			*i++
			n += int(b)
			if b != 255 {
				return n, nil
			}
		}
	}
	for i := 0; i < len(in); {
		tok := in[i]
		i++
		lit, err := length(&i, int(tok>>4))
		if err != nil {
			return nil, err
		}
		if lit > len(in)-i {
			return nil, fmt.Errorf("%w: literals run off the block", errLZ4)
		}
		out = append(out, in[i:i+lit]...)
		i += lit
		if i == len(in) {
			break
		}
		if len(in)-i < 2 {
			return nil, fmt.Errorf("%w: truncated offset", errLZ4)
		}
		off := int(in[i]) | int(in[i+1])<<8
		i += 2
		ml, err := length(&i, int(tok&15))
		if err != nil {
			return nil, err
		}
		ml += 4
		if off == 0 || off > len(out) {
			return nil, fmt.Errorf("%w: offset %d with %d bytes out", errLZ4, off, len(out))
		}
		start := len(out) - off
		if off >= ml {
			out = append(out, out[start:start+ml]...)
			continue
		}
		for k := range ml { // the match overlaps what it writes
			out = append(out, out[start+k])
		}
	}
	return out, nil
}
