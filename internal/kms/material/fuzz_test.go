package material

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzUnwrapImport feeds arbitrary wrapped material to UnwrapImport with
// the RSA_AES_KEY_WRAP algorithms (and names it does not know). The
// fuzzed bytes follow a valid RSA-OAEP encryption of a fixed AES key, so
// they reach the RFC 5649 unwrapping, the part of the input this package
// parses itself: random bytes in the RSA-OAEP part would only exercise
// crypto/rsa's own checks, at the price of an RSA decryption for every
// byte the fuzzer tries to remove when it minimises, which left it no
// time to fuzz. It must never panic; every failure wraps
// ErrInvalidCiphertext (ErrUnsupported for an unknown algorithm); and the
// material it returns is exactly what wrapping it again gives, so no
// other encoding of the same material is accepted.
func FuzzUnwrapImport(f *testing.F) {
	priv := testMaterial(f, RSA2048)
	pub, err := PublicKey(RSA2048, priv)
	if err != nil {
		f.Fatal(err)
	}
	aesKey := bytes.Repeat([]byte{0xa5}, 32)
	algs := []string{"RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSAES_PKCS1_V1_5", ""}
	// prefixes[alg] is the RSA-OAEP part that carries aesKey.
	prefixes := map[string][]byte{}
	for _, alg := range algs[:2] {
		enc := wrapForImport(f, pub, alg, []byte("x"), aesKey)
		prefixes[alg] = enc[:256]
	}

	for i, alg := range algs[:2] {
		for _, m := range [][]byte{bytes.Repeat([]byte{1}, 32), testMaterial(f, ECCNISTP256), []byte("7 bytes"), {0}} {
			enc := wrapForImport(f, pub, alg, m, aesKey)
			f.Add(enc[256:], uint8(i))
		}
	}
	f.Add([]byte{}, uint8(0))
	f.Add(make([]byte, 16), uint8(1))
	f.Add(make([]byte, 24), uint8(2))

	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		alg := algs[int(sel)%len(algs)]
		p, wraps := prefixes[alg]
		m, err := UnwrapImport(priv, alg, append(bytes.Clone(p), data...))
		if err != nil {
			want := ErrInvalidCiphertext
			if !wraps {
				want = ErrUnsupported
			}
			if !errors.Is(err, want) {
				t.Fatalf("%q: %v, want %v", alg, err, want)
			}
			return
		}
		if !wraps {
			t.Fatalf("%q accepted", alg)
		}
		again, err := wrapPad(aesKey, m)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("%s: unwrapped %x from %x, which wraps again to %x (%v)", alg, m, data, again, err)
		}
	})
}

// FuzzVerify feeds arbitrary messages and signatures to Verify with an
// RSA and an ECC key, under every signing algorithm (and ones the key
// does not allow), as RAW and as DIGEST. It must never panic; an error
// must be one of the sentinels for a malformed request, never for a bad
// signature; and a PKCS #1 v1.5 signature that verifies must be the one
// Sign makes, since that scheme has exactly one signature per digest.
func FuzzVerify(f *testing.F) {
	keys := []Spec{RSA2048, ECCNISTP256}
	algs := []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_512", "RSASSA_PKCS1_V1_5_SHA_256",
		"RSASSA_PKCS1_V1_5_SHA_384", "ECDSA_SHA_256", "ECDSA_SHA_384", "HMAC_SHA_256", ""}
	for _, s := range keys {
		testMaterial(f, s)
	}
	for ki, s := range keys {
		for ai, alg := range algs {
			msg := []byte("fuzz me")
			sig, err := Sign(s, testMaterial(f, s), alg, "RAW", msg)
			if err != nil {
				continue // not this key's algorithm
			}
			f.Add(msg, sig, uint8(ki), uint8(ai), false)
			f.Add(msg, sig[:len(sig)/2], uint8(ki), uint8(ai), false)
			h := signingAlgs[alg].hash.New()
			h.Write(msg)
			f.Add(h.Sum(nil), sig, uint8(ki), uint8(ai), true)
		}
	}
	f.Add([]byte{}, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, uint8(1), uint8(4), false)
	f.Add(make([]byte, 32), make([]byte, 256), uint8(0), uint8(2), true)

	f.Fuzz(func(t *testing.T, msg, sig []byte, keySel, algSel uint8, digest bool) {
		s := keys[int(keySel)%len(keys)]
		alg := algs[int(algSel)%len(algs)]
		typ := "RAW"
		if digest {
			typ = "DIGEST"
		}
		m := testMaterial(t, s)
		ok, err := Verify(s, m, alg, typ, msg, sig)
		if err != nil {
			if ok {
				t.Fatal("true with an error")
			}
			if !errors.Is(err, ErrInvalidAlgorithm) && !errors.Is(err, ErrInvalidMessage) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if ok && signingAlgs[alg].scheme == pkcs1v15 {
			again, err := Sign(s, m, alg, typ, msg)
			if err != nil || !bytes.Equal(again, sig) {
				t.Fatalf("PKCS #1 v1.5 signature %x verified but Sign makes %x (%v)", sig, again, err)
			}
		}
	})
}
