package keys

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzParseRootKeyFiles: the parsers of host.key.tpm and host.key.argon2
// never panic, and what they accept encodes back to the same bytes (no
// field is skipped or read twice).
func FuzzParseRootKeyFiles(f *testing.F) {
	a := argon2Blob{params: newArgon2Params, salt: bytes.Repeat([]byte{1}, 16), wrapped: bytes.Repeat([]byte{2}, wrappedRootLen)}
	f.Add(a.marshal())
	tb := tpmBlob{srk: srkECCP256, srkName: append([]byte{0, 0x0b}, bytes.Repeat([]byte{3}, 32)...),
		public: tpm2.Marshal(&sealedTemplate), private: bytes.Repeat([]byte{4}, 80)}
	f.Add(tb.marshal())
	f.Add([]byte(tpmMagic))
	f.Add([]byte(argon2Magic + "\x00\x00\x00\x03"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, pub, err := parseTPMBlob(data); err == nil {
			if pub == nil || !bytes.Equal(b.marshal(), data) {
				t.Fatalf("host.key.tpm accepted and encoded back differently")
			}
		}
		if b, err := parseArgon2Blob(data); err == nil {
			if !bytes.Equal(b.marshal(), data) {
				t.Fatalf("host.key.argon2 accepted and encoded back differently")
			}
		}
	})
}
