package material

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// TestMacRFC4231 checks Mac against RFC 4231's test cases 1 and 2 (the
// ones whose output is not truncated).
func TestMacRFC4231(t *testing.T) {
	tc1Key := bytes.Repeat([]byte{0x0b}, 20)
	for _, tc := range []struct {
		s    Spec
		alg  string
		key  []byte
		data string
		want string
	}{
		{HMAC224, "HMAC_SHA_224", tc1Key, "Hi There", "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22"},
		{HMAC256, "HMAC_SHA_256", tc1Key, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{HMAC384, "HMAC_SHA_384", tc1Key, "Hi There", "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"},
		{HMAC512, "HMAC_SHA_512", tc1Key, "Hi There", "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
		{HMAC224, "HMAC_SHA_224", []byte("Jefe"), "what do ya want for nothing?", "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"},
		{HMAC256, "HMAC_SHA_256", []byte("Jefe"), "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{HMAC384, "HMAC_SHA_384", []byte("Jefe"), "what do ya want for nothing?", "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{HMAC512, "HMAC_SHA_512", []byte("Jefe"), "what do ya want for nothing?", "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	} {
		got, err := Mac(tc.s, tc.key, tc.alg, []byte(tc.data))
		if err != nil || hex.EncodeToString(got) != tc.want {
			t.Errorf("Mac(%s, %q) = %x, %v; want %s", tc.alg, tc.data, got, err, tc.want)
		}
		want, _ := hex.DecodeString(tc.want)
		if ok, err := VerifyMac(tc.s, tc.key, tc.alg, []byte(tc.data), want); !ok || err != nil {
			t.Errorf("VerifyMac(%s) of the RFC's MAC = %v, %v", tc.alg, ok, err)
		}
	}
}

func TestVerifyMac(t *testing.T) {
	m := testMaterial(t, HMAC384)
	msg := []byte("message")
	mac, err := Mac(HMAC384, m, "HMAC_SHA_384", msg)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(mac)
	flipped[0] ^= 1
	for _, tc := range []struct {
		name string
		msg  []byte
		mac  []byte
	}{
		{"flipped", msg, flipped},
		{"truncated", msg, mac[:len(mac)-1]},
		{"truncated to 32", msg, mac[:32]},
		{"extended", msg, append(bytes.Clone(mac), 0)},
		{"empty", msg, nil},
		{"other message", []byte("messagf"), mac},
	} {
		if ok, err := VerifyMac(HMAC384, m, "HMAC_SHA_384", tc.msg, tc.mac); ok || err != nil {
			t.Errorf("%s: VerifyMac = %v, %v; want false, nil", tc.name, ok, err)
		}
	}
	other := testMaterial(t, HMAC512)[:48]
	if ok, err := VerifyMac(HMAC384, other, "HMAC_SHA_384", msg, mac); ok || err != nil {
		t.Errorf("another key: VerifyMac = %v, %v", ok, err)
	}
}

func TestMacErrors(t *testing.T) {
	m := testMaterial(t, HMAC256)
	for _, tc := range []struct {
		s   Spec
		alg string
	}{
		{HMAC256, "HMAC_SHA_224"},
		{HMAC256, "HMAC_SHA_512"},
		{HMAC512, "HMAC_SHA_256"},
		{HMAC256, "hmac_sha_256"},
		{SymmetricDefault, "HMAC_SHA_256"},
		{RSA2048, "HMAC_SHA_256"},
	} {
		if _, err := Mac(tc.s, m, tc.alg, []byte("m")); !errors.Is(err, ErrInvalidAlgorithm) {
			t.Errorf("Mac(%s, %s) = %v, want ErrInvalidAlgorithm", tc.s, tc.alg, err)
		}
		if _, err := VerifyMac(tc.s, m, tc.alg, []byte("m"), make([]byte, 32)); !errors.Is(err, ErrInvalidAlgorithm) {
			t.Errorf("VerifyMac(%s, %s) = %v, want ErrInvalidAlgorithm", tc.s, tc.alg, err)
		}
	}
	if _, err := Mac(HMAC256, m, "HMAC_SHA_256", make([]byte, 4096)); err != nil {
		t.Errorf("4096-byte message: %v", err)
	}
	if _, err := Mac(HMAC256, m, "HMAC_SHA_256", make([]byte, 4097)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("4097-byte message: %v, want ErrTooLarge", err)
	}
	if _, err := VerifyMac(HMAC256, m, "HMAC_SHA_256", make([]byte, 4097), make([]byte, 32)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("VerifyMac 4097-byte message: %v, want ErrTooLarge", err)
	}
	if _, err := Mac(HMAC256, nil, "HMAC_SHA_256", []byte("m")); !errors.Is(err, ErrInvalidMaterial) {
		t.Errorf("empty key: %v, want ErrInvalidMaterial", err)
	}
	if _, err := Mac("HMAC_128", m, "HMAC_SHA_256", []byte("m")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("HMAC_128: %v, want ErrUnsupported", err)
	}
}
