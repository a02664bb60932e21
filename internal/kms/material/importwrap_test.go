package material

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"
)

// wrapForImport is what a client does with the wrapping public key, per
// algorithm (the openssl version of it is in openssl_test.go).
func wrapForImport(t testing.TB, publicSPKI []byte, alg string, material, aesKey []byte) []byte {
	t.Helper()
	p, err := x509.ParsePKIXPublicKey(publicSPKI)
	if err != nil {
		t.Fatal(err)
	}
	pub := p.(*rsa.PublicKey)
	h := crypto.SHA256
	if alg == "RSAES_OAEP_SHA_1" || alg == "RSA_AES_KEY_WRAP_SHA_1" {
		h = crypto.SHA1
	}
	switch alg {
	case "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256":
		out, err := rsa.EncryptOAEP(h.New(), rand.Reader, pub, material, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	head, err := rsa.EncryptOAEP(h.New(), rand.Reader, pub, aesKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := wrapPad(aesKey, material)
	if err != nil {
		t.Fatal(err)
	}
	return append(head, tail...)
}

var importAlgs = []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"}

func TestWrappingKey(t *testing.T) {
	for _, spec := range []string{"RSA_2048", "RSA_3072", "RSA_4096"} {
		if testing.Short() && spec != "RSA_2048" {
			continue
		}
		priv, pub, err := WrappingKey(spec)
		if err != nil {
			t.Fatalf("WrappingKey(%s): %v", spec, err)
		}
		if err := Validate(Spec(spec), priv); err != nil {
			t.Fatalf("WrappingKey(%s) private key: %v", spec, err)
		}
		if want, _ := PublicKey(Spec(spec), priv); !bytes.Equal(pub, want) {
			t.Fatalf("WrappingKey(%s): public key is not the private key's", spec)
		}
		m := []byte("0123456789abcdef0123456789abcdef")
		got, err := UnwrapImport(priv, "RSAES_OAEP_SHA_256", wrapForImport(t, pub, "RSAES_OAEP_SHA_256", m, nil))
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("WrappingKey(%s): import round trip = %x, %v", spec, got, err)
		}
	}
	for _, spec := range []string{"SM2", "ECC_NIST_P256", "SYMMETRIC_DEFAULT", "RSA_1024", ""} {
		if _, _, err := WrappingKey(spec); !errors.Is(err, ErrUnsupported) {
			t.Errorf("WrappingKey(%q) = %v, want ErrUnsupported", spec, err)
		}
	}
}

func TestUnwrapImport(t *testing.T) {
	priv := testMaterial(t, RSA2048)
	pub, err := PublicKey(RSA2048, priv)
	if err != nil {
		t.Fatal(err)
	}
	aesKey := bytes.Repeat([]byte{0x5a}, 32)
	materials := map[string][]byte{
		"symmetric": bytes.Repeat([]byte{1}, 32),
		"HMAC_224":  bytes.Repeat([]byte{2}, 28),
		"HMAC_512":  bytes.Repeat([]byte{3}, 128),
		"P-256":     testMaterial(t, ECCNISTP256),
		"RSA_2048":  testMaterial(t, RSA2048),
	}
	for _, alg := range importAlgs {
		for name, m := range materials {
			if len(m) > oaepMax(256, crypto.SHA1) && (alg == "RSAES_OAEP_SHA_1" || alg == "RSAES_OAEP_SHA_256") {
				continue // too long for RSA-OAEP alone, as in AWS
			}
			enc := wrapForImport(t, pub, alg, m, aesKey)
			got, err := UnwrapImport(priv, alg, enc)
			if err != nil || !bytes.Equal(got, m) {
				t.Fatalf("%s, %s: UnwrapImport = %x, %v", alg, name, got, err)
			}
			// Every other algorithm refuses it.
			for _, other := range importAlgs {
				if other == alg {
					continue
				}
				if _, err := UnwrapImport(priv, other, enc); !errors.Is(err, ErrInvalidCiphertext) {
					t.Fatalf("%s material unwrapped as %s: %v, want ErrInvalidCiphertext", alg, other, err)
				}
			}
			// Tampering anywhere is refused.
			for _, i := range []int{0, 255, 256, len(enc) - 1} {
				if i >= len(enc) {
					continue
				}
				bad := bytes.Clone(enc)
				bad[i] ^= 1
				if _, err := UnwrapImport(priv, alg, bad); !errors.Is(err, ErrInvalidCiphertext) {
					t.Fatalf("%s, byte %d flipped: %v, want ErrInvalidCiphertext", alg, i, err)
				}
			}
		}
	}

	wrapped := wrapForImport(t, pub, "RSA_AES_KEY_WRAP_SHA_256", materials["symmetric"], aesKey)
	for _, tc := range []struct {
		name string
		enc  []byte
	}{
		{"empty", nil},
		{"RSA part only", wrapped[:256]},
		{"RSA part and 8 bytes", wrapped[:264]},
		{"RSA part cut", wrapped[1:]},
		{"AES key of 16 bytes", wrapForImport(t, pub, "RSA_AES_KEY_WRAP_SHA_256", materials["symmetric"], aesKey[:16])},
		{"AES key of 24 bytes", wrapForImport(t, pub, "RSA_AES_KEY_WRAP_SHA_256", materials["symmetric"], aesKey[:24])},
	} {
		if _, err := UnwrapImport(priv, "RSA_AES_KEY_WRAP_SHA_256", tc.enc); !errors.Is(err, ErrInvalidCiphertext) {
			t.Errorf("%s: %v, want ErrInvalidCiphertext", tc.name, err)
		}
	}
	// Under another wrapping key (a GetParametersForImport token mixed up).
	other, err := Generate(RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapImport(other, "RSA_AES_KEY_WRAP_SHA_256", wrapped); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("another wrapping key: %v, want ErrInvalidCiphertext", err)
	}

	for _, alg := range []string{"RSAES_PKCS1_V1_5", "SM2PKE", "RSA_AES_KEY_WRAP_SHA_512", ""} {
		if _, err := UnwrapImport(priv, alg, wrapped); !errors.Is(err, ErrUnsupported) {
			t.Errorf("algorithm %q: %v, want ErrUnsupported", alg, err)
		}
	}
	// A broken wrapping key is the service's fault, not the client's.
	for name, k := range map[string][]byte{"truncated": priv[:40], "P-256": testMaterial(t, ECCNISTP256)} {
		_, err := UnwrapImport(k, "RSA_AES_KEY_WRAP_SHA_256", wrapped)
		if err == nil || errors.Is(err, ErrInvalidCiphertext) || errors.Is(err, ErrInvalidMaterial) {
			t.Errorf("%s wrapping key: %v, want an internal error", name, err)
		}
	}
}
