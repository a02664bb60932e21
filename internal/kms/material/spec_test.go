package material

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
)

func TestValidPair(t *testing.T) {
	valid := map[Spec][]Usage{
		SymmetricDefault: {EncryptDecrypt},
		HMAC224:          {GenerateVerifyMac},
		HMAC256:          {GenerateVerifyMac},
		HMAC384:          {GenerateVerifyMac},
		HMAC512:          {GenerateVerifyMac},
		RSA2048:          {EncryptDecrypt, SignVerify},
		RSA3072:          {EncryptDecrypt, SignVerify},
		RSA4096:          {EncryptDecrypt, SignVerify},
		ECCNISTP256:      {SignVerify},
		ECCNISTP384:      {SignVerify},
		ECCNISTP521:      {SignVerify},
	}
	usages := []Usage{EncryptDecrypt, SignVerify, GenerateVerifyMac, "KEY_AGREEMENT", "", "encrypt_decrypt"}
	for _, s := range allSpecs {
		for _, u := range usages {
			err := ValidPair(s, u)
			if slices.Contains(valid[s], u) {
				if err != nil {
					t.Errorf("ValidPair(%s, %s) = %v, want nil", s, u, err)
				}
			} else if !errors.Is(err, ErrUnsupported) {
				t.Errorf("ValidPair(%s, %s) = %v, want ErrUnsupported", s, u, err)
			}
		}
	}
	for _, s := range []Spec{"ECC_SECG_P256K1", "SM2", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "", "rsa_2048", "AES_256"} {
		if err := ValidPair(s, SignVerify); !errors.Is(err, ErrUnsupported) {
			t.Errorf("ValidPair(%q, SIGN_VERIFY) = %v, want ErrUnsupported", s, err)
		}
	}
}

func TestAlgorithmLists(t *testing.T) {
	rsaSign := []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
		"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}
	for _, tc := range []struct {
		s         Spec
		u         Usage
		enc, sign []string
	}{
		{SymmetricDefault, EncryptDecrypt, []string{"SYMMETRIC_DEFAULT"}, nil},
		{RSA2048, EncryptDecrypt, []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}, nil},
		{RSA4096, EncryptDecrypt, []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}, nil},
		{RSA3072, SignVerify, nil, rsaSign},
		{ECCNISTP256, SignVerify, nil, []string{"ECDSA_SHA_256"}},
		{ECCNISTP384, SignVerify, nil, []string{"ECDSA_SHA_384"}},
		{ECCNISTP521, SignVerify, nil, []string{"ECDSA_SHA_512"}},
		{HMAC256, GenerateVerifyMac, nil, nil},
		// Pairs ValidPair refuses list nothing.
		{SymmetricDefault, SignVerify, nil, nil},
		{ECCNISTP256, EncryptDecrypt, nil, nil},
		{"SM2", SignVerify, nil, nil},
	} {
		if got := EncryptionAlgorithms(tc.s, tc.u); !slices.Equal(got, tc.enc) {
			t.Errorf("EncryptionAlgorithms(%s, %s) = %q, want %q", tc.s, tc.u, got, tc.enc)
		}
		if got := SigningAlgorithms(tc.s, tc.u); !slices.Equal(got, tc.sign) {
			t.Errorf("SigningAlgorithms(%s, %s) = %q, want %q", tc.s, tc.u, got, tc.sign)
		}
	}
	for s, want := range map[Spec][]string{
		HMAC224: {"HMAC_SHA_224"}, HMAC256: {"HMAC_SHA_256"}, HMAC384: {"HMAC_SHA_384"}, HMAC512: {"HMAC_SHA_512"},
		SymmetricDefault: nil, RSA2048: nil, ECCNISTP256: nil, "HMAC_128": nil,
	} {
		if got := MacAlgorithms(s); !slices.Equal(got, want) {
			t.Errorf("MacAlgorithms(%s) = %q, want %q", s, got, want)
		}
	}
	// Each call returns its own slice: a caller that edits one does not
	// change what the next caller sees.
	SigningAlgorithms(RSA2048, SignVerify)[0] = "x"
	if SigningAlgorithms(RSA2048, SignVerify)[0] != "RSASSA_PSS_SHA_256" {
		t.Fatal("SigningAlgorithms returns a shared slice")
	}
}

func TestGenerate(t *testing.T) {
	for _, tc := range []struct {
		s Spec
		n int
	}{{SymmetricDefault, 32}, {HMAC224, 28}, {HMAC256, 32}, {HMAC384, 48}, {HMAC512, 64}} {
		a, err := Generate(tc.s)
		if err != nil || len(a) != tc.n {
			t.Fatalf("Generate(%s) = %d bytes, %v; want %d", tc.s, len(a), err, tc.n)
		}
		b, _ := Generate(tc.s)
		if string(a) == string(b) {
			t.Fatalf("Generate(%s) twice gave the same bytes", tc.s)
		}
	}
	for _, s := range asymSpecs {
		m := testMaterial(t, s)
		k, err := x509.ParsePKCS8PrivateKey(m)
		if err != nil {
			t.Fatalf("Generate(%s) is not PKCS #8: %v", s, err)
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			if want := specs[s].size; k.N.BitLen() != want || k.E != 65537 {
				t.Errorf("Generate(%s): %d-bit modulus, e=%d", s, k.N.BitLen(), k.E)
			}
		case *ecdsa.PrivateKey:
			if k.Curve != specs[s].curve {
				t.Errorf("Generate(%s): curve %s", s, k.Curve.Params().Name)
			}
		default:
			t.Errorf("Generate(%s): a %T", s, k)
		}
		if err := Validate(s, m); err != nil {
			t.Errorf("Validate(%s, Generate(%s)) = %v", s, s, err)
		}
	}
	for _, s := range []Spec{"ECC_SECG_P256K1", "SM2", "ML_DSA_65", ""} {
		if _, err := Generate(s); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Generate(%q) = %v, want ErrUnsupported", s, err)
		}
	}
}

func TestValidate(t *testing.T) {
	bytesOf := func(n int) []byte { return make([]byte, n) }
	ok := []struct {
		s Spec
		m []byte
	}{
		{SymmetricDefault, bytesOf(32)},
		{HMAC224, bytesOf(28)}, {HMAC224, bytesOf(64)},
		{HMAC256, bytesOf(32)}, {HMAC256, bytesOf(64)},
		{HMAC384, bytesOf(48)}, {HMAC384, bytesOf(128)},
		{HMAC512, bytesOf(64)}, {HMAC512, bytesOf(100)}, {HMAC512, bytesOf(128)},
	}
	for _, tc := range ok {
		if err := Validate(tc.s, tc.m); err != nil {
			t.Errorf("Validate(%s, %d bytes) = %v", tc.s, len(tc.m), err)
		}
	}

	p256 := testMaterial(t, ECCNISTP256)
	rsa2048 := testMaterial(t, RSA2048)
	pkcs1 := func() []byte {
		k, _ := x509.ParsePKCS8PrivateKey(rsa2048)
		return x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))
	}()
	sec1 := func() []byte {
		k, _ := x509.ParsePKCS8PrivateKey(p256)
		b, _ := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
		return b
	}()
	ed := func() []byte {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		b, _ := x509.MarshalPKCS8PrivateKey(k)
		return b
	}()
	x25519 := func() []byte {
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		b, _ := x509.MarshalPKCS8PrivateKey(k)
		return b
	}()
	p224 := func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
		b, _ := x509.MarshalPKCS8PrivateKey(k)
		return b
	}()
	bad := []struct {
		name string
		s    Spec
		m    []byte
	}{
		{"symmetric 31 bytes", SymmetricDefault, bytesOf(31)},
		{"symmetric 33 bytes", SymmetricDefault, bytesOf(33)},
		{"symmetric AES-128", SymmetricDefault, bytesOf(16)},
		{"symmetric empty", SymmetricDefault, nil},
		{"HMAC_224 27 bytes", HMAC224, bytesOf(27)},
		{"HMAC_224 65 bytes", HMAC224, bytesOf(65)},
		{"HMAC_256 31 bytes", HMAC256, bytesOf(31)},
		{"HMAC_256 65 bytes", HMAC256, bytesOf(65)},
		{"HMAC_384 47 bytes", HMAC384, bytesOf(47)},
		{"HMAC_384 129 bytes", HMAC384, bytesOf(129)},
		{"HMAC_512 63 bytes", HMAC512, bytesOf(63)},
		{"HMAC_512 129 bytes", HMAC512, bytesOf(129)},
		{"RSA_2048 key for RSA_3072", RSA3072, rsa2048},
		{"RSA_2048 key for RSA_4096", RSA4096, rsa2048},
		{"RSA_3072 key for RSA_2048", RSA2048, testMaterial(t, RSA3072)},
		{"P-256 key for P-384", ECCNISTP384, p256},
		{"P-384 key for P-521", ECCNISTP521, testMaterial(t, ECCNISTP384)},
		{"P-256 key for RSA_2048", RSA2048, p256},
		{"RSA key for P-256", ECCNISTP256, rsa2048},
		{"P-224 key for P-256", ECCNISTP256, p224},
		{"Ed25519 key for P-256", ECCNISTP256, ed},
		{"X25519 key for P-256", ECCNISTP256, x25519},
		{"PKCS #1, not PKCS #8", RSA2048, pkcs1},
		{"SEC 1, not PKCS #8", ECCNISTP256, sec1},
		{"trailing byte", ECCNISTP256, append(append([]byte(nil), p256...), 0)},
		{"truncated", RSA2048, rsa2048[:len(rsa2048)-1]},
		{"32 random bytes for RSA", RSA2048, bytesOf(32)},
		{"empty for P-256", ECCNISTP256, nil},
	}
	for _, tc := range bad {
		if err := Validate(tc.s, tc.m); !errors.Is(err, ErrInvalidMaterial) {
			t.Errorf("%s: Validate = %v, want ErrInvalidMaterial", tc.name, err)
		}
	}
	if err := Validate("SM2", p256); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Validate(SM2) = %v, want ErrUnsupported", err)
	}
}
