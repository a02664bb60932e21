package xts

import (
	"bytes"
	"crypto/aes"
	"errors"
	"testing"

	xxts "golang.org/x/crypto/xts"
)

// FuzzXTS compares the assembly, the portable code and x/crypto/xts on
// arbitrary keys, data, sector numbers and sector sizes, in place and not,
// and checks that decryption inverts encryption.
func FuzzXTS(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1, 2, 3, 4}, 16), make([]byte, 512), uint64(0), uint16(31), false)
	f.Add(bytes.Repeat([]byte{9}, 70), bytes.Repeat([]byte("sector"), 700), uint64(1<<63), uint16(255), true)
	f.Add(make([]byte, 64), make([]byte, 64), uint64(5), uint16(0), false)
	f.Add([]byte("short key"), make([]byte, 4096*3), ^uint64(0)-1, uint16(4096/16-1), true)
	f.Add(bytes.Repeat([]byte{0xa5, 0x5a}, 32), make([]byte, 48*5), ^uint64(0)-4, uint16(2), false)

	f.Fuzz(func(t *testing.T, key, data []byte, first uint64, sizeSel uint16, inPlace bool) {
		// Stretch or cut the key to 64 bytes.
		k := make([]byte, 64)
		for i := range k {
			if len(key) > 0 {
				k[i] = key[i%len(key)] + byte(i/len(key))
			}
		}
		c, err := newCipher(k)
		if bytes.Equal(k[:32], k[32:]) {
			if !errors.Is(err, errEqualKeys) {
				t.Fatalf("equal halves accepted: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		ss := 16 * (1 + int(sizeSel)%512) // 16 .. 8192 bytes
		if len(data) < ss {
			ss = len(data) / 16 * 16
			if ss == 0 {
				return
			}
		}
		data = data[:len(data)/ss*ss]
		n := uint64(len(data) / ss)

		if first > ^uint64(0)-(n-1) {
			for _, im := range impls() {
				if err := im.encrypt(c, make([]byte, len(data)), data, first, ss); !errors.Is(err, errSectorWrap) {
					t.Fatalf("%s: sector overflow not rejected: %v", im.name, err)
				}
			}
			return
		}

		ref, err := xxts.NewCipher(aes.NewCipher, k)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(data))
		for i := 0; i < int(n); i++ {
			ref.Encrypt(want[i*ss:(i+1)*ss], data[i*ss:(i+1)*ss], first+uint64(i))
		}

		for _, im := range impls() {
			var ct []byte
			if inPlace {
				ct = append([]byte(nil), data...)
				err = im.encrypt(c, ct, ct, first, ss)
			} else {
				ct = make([]byte, len(data))
				err = im.encrypt(c, ct, data, first, ss)
			}
			if err != nil {
				t.Fatalf("%s: %v", im.name, err)
			}
			if !bytes.Equal(ct, want) {
				t.Fatalf("%s: encryption differs from x/crypto/xts (sectorSize %d, sectors %d, first %#x)", im.name, ss, n, first)
			}
			var pt []byte
			if inPlace {
				pt = ct
				err = im.decrypt(c, pt, pt, first, ss)
			} else {
				pt = make([]byte, len(ct))
				err = im.decrypt(c, pt, ct, first, ss)
			}
			if err != nil {
				t.Fatalf("%s: %v", im.name, err)
			}
			if !bytes.Equal(pt, data) {
				t.Fatalf("%s: decrypt(encrypt(x)) != x", im.name)
			}
			// Decrypting arbitrary data must match x/crypto as well.
			got := make([]byte, len(data))
			if err := im.decrypt(c, got, data, first, ss); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < int(n); i++ {
				ref.Decrypt(want[i*ss:(i+1)*ss], data[i*ss:(i+1)*ss], first+uint64(i))
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: decryption differs from x/crypto/xts", im.name)
			}
			// Restore want for the next implementation.
			for i := 0; i < int(n); i++ {
				ref.Encrypt(want[i*ss:(i+1)*ss], data[i*ss:(i+1)*ss], first+uint64(i))
			}
		}
	})
}
