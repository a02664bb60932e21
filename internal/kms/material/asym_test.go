package material

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"testing"
)

func TestPublicKey(t *testing.T) {
	for _, s := range asymSpecs {
		m := testMaterial(t, s)
		spki, err := PublicKey(s, m)
		if err != nil {
			t.Fatalf("PublicKey(%s): %v", s, err)
		}
		pub, err := x509.ParsePKIXPublicKey(spki)
		if err != nil {
			t.Fatalf("PublicKey(%s) is not a SubjectPublicKeyInfo: %v", s, err)
		}
		priv, _ := x509.ParsePKCS8PrivateKey(m)
		type equaler interface{ Equal(crypto.PublicKey) bool }
		if !priv.(crypto.Signer).Public().(equaler).Equal(pub) {
			t.Fatalf("PublicKey(%s) is not the material's public key", s)
		}
	}
	for _, s := range []Spec{SymmetricDefault, HMAC256} {
		if _, err := PublicKey(s, testMaterial(t, s)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("PublicKey(%s) = %v, want ErrUnsupported", s, err)
		}
	}
	if _, err := PublicKey(ECCNISTP384, testMaterial(t, ECCNISTP256)); !errors.Is(err, ErrInvalidMaterial) {
		t.Errorf("PublicKey of P-256 material as P-384: %v, want ErrInvalidMaterial", err)
	}
}

// oaepLimits are AWS's documented plaintext limits.
var oaepLimits = map[Spec]map[string]int{
	RSA2048: {"RSAES_OAEP_SHA_1": 214, "RSAES_OAEP_SHA_256": 190},
	RSA3072: {"RSAES_OAEP_SHA_1": 342, "RSAES_OAEP_SHA_256": 318},
	RSA4096: {"RSAES_OAEP_SHA_1": 470, "RSAES_OAEP_SHA_256": 446},
}

func TestAsymEncryptDecrypt(t *testing.T) {
	for _, s := range rsaSpecs {
		m := testMaterial(t, s)
		for alg, limit := range oaepLimits[s] {
			for _, n := range []int{1, 32, limit} {
				pt := bytes.Repeat([]byte{byte(n)}, n)
				ct, err := AsymEncrypt(s, m, alg, pt)
				if err != nil {
					t.Fatalf("%s %s %d bytes: %v", s, alg, n, err)
				}
				if len(ct) != specs[s].size/8 {
					t.Fatalf("%s: %d-byte ciphertext", s, len(ct))
				}
				got, err := AsymDecrypt(s, m, alg, ct)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%s %s: decrypt = %x, %v", s, alg, got, err)
				}
				other := "RSAES_OAEP_SHA_1"
				if alg == other {
					other = "RSAES_OAEP_SHA_256"
				}
				if _, err := AsymDecrypt(s, m, other, ct); !errors.Is(err, ErrInvalidCiphertext) {
					t.Fatalf("%s: decrypt with %s of a %s ciphertext: %v, want ErrInvalidCiphertext", s, other, alg, err)
				}
			}
			if _, err := AsymEncrypt(s, m, alg, make([]byte, limit+1)); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%s %s: %d bytes: %v, want ErrTooLarge", s, alg, limit+1, err)
			}
		}
	}

	m := testMaterial(t, RSA2048)
	ct, err := AsymEncrypt(RSA2048, m, "RSAES_OAEP_SHA_256", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		c := bytes.Clone(ct)
		c[i] ^= 0x40
		if _, err := AsymDecrypt(RSA2048, m, "RSAES_OAEP_SHA_256", c); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("byte %d flipped: %v, want ErrInvalidCiphertext", i, err)
		}
	}
	for _, c := range [][]byte{nil, ct[:255], append(bytes.Clone(ct), 0), make([]byte, 256)} {
		if _, err := AsymDecrypt(RSA2048, m, "RSAES_OAEP_SHA_256", c); !errors.Is(err, ErrInvalidCiphertext) {
			t.Fatalf("%d-byte ciphertext: %v, want ErrInvalidCiphertext", len(c), err)
		}
	}
	if _, err := AsymDecrypt(RSA2048, testMaterial(t, RSA2048)[:100], "RSAES_OAEP_SHA_256", ct); !errors.Is(err, ErrInvalidMaterial) {
		t.Fatalf("truncated material: %v, want ErrInvalidMaterial", err)
	}

	for _, tc := range []struct {
		s   Spec
		alg string
	}{
		{RSA2048, "SYMMETRIC_DEFAULT"},
		{RSA2048, "RSAES_PKCS1_V1_5"},
		{RSA2048, "RSASSA_PSS_SHA_256"},
		{ECCNISTP256, "RSAES_OAEP_SHA_256"},
		{SymmetricDefault, "RSAES_OAEP_SHA_256"},
		{HMAC256, "RSAES_OAEP_SHA_1"},
	} {
		if _, err := AsymEncrypt(tc.s, testMaterial(t, tc.s), tc.alg, []byte("x")); !errors.Is(err, ErrInvalidAlgorithm) {
			t.Errorf("AsymEncrypt(%s, %s) = %v, want ErrInvalidAlgorithm", tc.s, tc.alg, err)
		}
		if _, err := AsymDecrypt(tc.s, testMaterial(t, tc.s), tc.alg, ct); !errors.Is(err, ErrInvalidAlgorithm) {
			t.Errorf("AsymDecrypt(%s, %s) = %v, want ErrInvalidAlgorithm", tc.s, tc.alg, err)
		}
	}
}

// signCases are every spec with every algorithm it allows.
func signCases() []struct {
	s   Spec
	alg string
} {
	var out []struct {
		s   Spec
		alg string
	}
	for _, s := range asymSpecs {
		for _, alg := range SigningAlgorithms(s, SignVerify) {
			out = append(out, struct {
				s   Spec
				alg string
			}{s, alg})
		}
	}
	return out
}

func TestSignVerify(t *testing.T) {
	msg := []byte("the message a user signs")
	for _, tc := range signCases() {
		t.Run(fmt.Sprintf("%s/%s", tc.s, tc.alg), func(t *testing.T) {
			m := testMaterial(t, tc.s)
			h := signingAlgs[tc.alg].hash
			d := h.New()
			d.Write(msg)
			digest := d.Sum(nil)

			sig, err := Sign(tc.s, m, tc.alg, "RAW", msg)
			if err != nil {
				t.Fatal(err)
			}
			// RAW and DIGEST are the same signature scheme: a RAW signature
			// verifies as the signature of the message's digest, and back.
			for _, v := range []struct {
				typ string
				msg []byte
			}{{"RAW", msg}, {"DIGEST", digest}} {
				if ok, err := Verify(tc.s, m, tc.alg, v.typ, v.msg, sig); !ok || err != nil {
					t.Fatalf("Verify %s of a RAW signature = %v, %v", v.typ, ok, err)
				}
			}
			dsig, err := Sign(tc.s, m, tc.alg, "DIGEST", digest)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := Verify(tc.s, m, tc.alg, "RAW", msg, dsig); !ok || err != nil {
				t.Fatalf("Verify RAW of a DIGEST signature = %v, %v", ok, err)
			}

			// A wrong signature or message is false, not an error.
			bad := bytes.Clone(sig)
			bad[len(bad)/2] ^= 1
			for _, v := range []struct {
				name string
				msg  []byte
				sig  []byte
			}{
				{"flipped signature", msg, bad},
				{"other message", []byte("another message"), sig},
				{"empty signature", msg, nil},
				{"truncated signature", msg, sig[:len(sig)-1]},
				{"extended signature", msg, append(bytes.Clone(sig), 0)},
			} {
				if ok, err := Verify(tc.s, m, tc.alg, "RAW", v.msg, v.sig); ok || err != nil {
					t.Fatalf("%s: Verify = %v, %v; want false, nil", v.name, ok, err)
				}
			}

			// The scheme's details, checked with crypto/* directly.
			pub, _ := x509.ParsePKCS8PrivateKey(m)
			switch signingAlgs[tc.alg].scheme {
			case pss:
				k := &pub.(*rsa.PrivateKey).PublicKey
				if err := rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: h.Size()}); err != nil {
					t.Fatalf("PSS salt is not the digest length (%d): %v", h.Size(), err)
				}
			case pkcs1v15:
				k := &pub.(*rsa.PrivateKey).PublicKey
				if err := rsa.VerifyPKCS1v15(k, h, digest, sig); err != nil {
					t.Fatal(err)
				}
				again, _ := Sign(tc.s, m, tc.alg, "RAW", msg)
				if !bytes.Equal(again, sig) {
					t.Fatal("PKCS #1 v1.5 signatures differ: the scheme is deterministic")
				}
			case ecdsaASN1:
				var rs struct{ R, S *big.Int }
				if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
					t.Fatalf("ECDSA signature is not a DER ECDSA-Sig-Value: %v", err)
				}
				if !ecdsa.Verify(&pub.(*ecdsa.PrivateKey).PublicKey, digest, rs.R, rs.S) {
					t.Fatal("ECDSA (r, s) does not verify")
				}
			}

			// Message shape errors.
			if _, err := Sign(tc.s, m, tc.alg, "RAW", make([]byte, 4097)); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("RAW 4097 bytes: %v, want ErrTooLarge", err)
			}
			if _, err := Sign(tc.s, m, tc.alg, "RAW", make([]byte, 4096)); err != nil {
				t.Fatalf("RAW 4096 bytes: %v", err)
			}
			for _, n := range []int{0, h.Size() - 1, h.Size() + 1, 64 + 1} {
				if _, err := Sign(tc.s, m, tc.alg, "DIGEST", make([]byte, n)); !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("DIGEST of %d bytes: %v, want ErrInvalidMessage", n, err)
				}
				if _, err := Verify(tc.s, m, tc.alg, "DIGEST", make([]byte, n), sig); !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("Verify DIGEST of %d bytes: %v, want ErrInvalidMessage", n, err)
				}
			}
			for _, typ := range []string{"EXTERNAL_MU", "raw", ""} {
				if _, err := Sign(tc.s, m, tc.alg, typ, msg); !errors.Is(err, ErrUnsupported) {
					t.Fatalf("message type %q: %v, want ErrUnsupported", typ, err)
				}
			}
		})
	}
}

func TestSignWrongAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		s   Spec
		alg string
	}{
		{ECCNISTP256, "ECDSA_SHA_384"},
		{ECCNISTP384, "ECDSA_SHA_256"},
		{ECCNISTP521, "ECDSA_SHA_384"},
		{ECCNISTP256, "RSASSA_PSS_SHA_256"},
		{RSA2048, "ECDSA_SHA_256"},
		{RSA2048, "RSAES_OAEP_SHA_256"},
		{RSA2048, "RSASSA_PSS_SHA_1"},
		{RSA2048, "SM2DSA"},
		{SymmetricDefault, "RSASSA_PSS_SHA_256"},
		{HMAC256, "HMAC_SHA_256"},
	} {
		m := testMaterial(t, tc.s)
		if _, err := Sign(tc.s, m, tc.alg, "RAW", []byte("m")); !errors.Is(err, ErrInvalidAlgorithm) {
			t.Errorf("Sign(%s, %s) = %v, want ErrInvalidAlgorithm", tc.s, tc.alg, err)
		}
		if _, err := Verify(tc.s, m, tc.alg, "RAW", []byte("m"), []byte("sig")); !errors.Is(err, ErrInvalidAlgorithm) {
			t.Errorf("Verify(%s, %s) = %v, want ErrInvalidAlgorithm", tc.s, tc.alg, err)
		}
	}
	if _, err := Sign(ECCNISTP384, testMaterial(t, ECCNISTP256), "ECDSA_SHA_384", "RAW", []byte("m")); !errors.Is(err, ErrInvalidMaterial) {
		t.Errorf("P-256 material as P-384: %v, want ErrInvalidMaterial", err)
	}
	if _, err := Sign("ECC_SECG_P256K1", nil, "ECDSA_SHA_256", "RAW", []byte("m")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ECC_SECG_P256K1: %v, want ErrUnsupported", err)
	}
}

// TestVerifyOtherKey checks that a signature by one key is false (not an
// error) under another key of the same spec.
func TestVerifyOtherKey(t *testing.T) {
	for _, s := range []Spec{RSA2048, ECCNISTP256} {
		other, err := Generate(s)
		if err != nil {
			t.Fatal(err)
		}
		alg := SigningAlgorithms(s, SignVerify)[0]
		sig, err := Sign(s, testMaterial(t, s), alg, "RAW", []byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := Verify(s, other, alg, "RAW", []byte("m"), sig); ok || err != nil {
			t.Errorf("%s: Verify under another key = %v, %v", s, ok, err)
		}
	}
}

func TestDataKeyPair(t *testing.T) {
	for _, spec := range []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"} {
		if testing.Short() && spec != "RSA_2048" && spec[:3] == "RSA" {
			continue
		}
		priv, pub, err := DataKeyPair(spec)
		if err != nil {
			t.Fatalf("DataKeyPair(%s): %v", spec, err)
		}
		if err := Validate(Spec(spec), priv); err != nil {
			t.Fatalf("DataKeyPair(%s) private key: %v", spec, err)
		}
		want, err := PublicKey(Spec(spec), priv)
		if err != nil || !bytes.Equal(pub, want) {
			t.Fatalf("DataKeyPair(%s): public key is not the private key's", spec)
		}
	}
	for _, spec := range []string{"ECC_SECG_P256K1", "SM2", "SYMMETRIC_DEFAULT", "HMAC_256", ""} {
		if _, _, err := DataKeyPair(spec); !errors.Is(err, ErrUnsupported) {
			t.Errorf("DataKeyPair(%q) = %v, want ErrUnsupported", spec, err)
		}
	}
}
