package mfa

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfcSeed is the RFC 6238 Appendix B seed for a hash: "1234567890"
// repeated to the hash's output size (20, 32 or 64 bytes), per the
// reference implementation in Appendix A.
func rfcSeed(n int) []byte {
	return bytes.Repeat([]byte("1234567890"), 7)[:n]
}

func TestHOTPRFC4226(t *testing.T) {
	secret := []byte("12345678901234567890")
	want := []string{"755224", "287082", "359152", "969429", "338314",
		"254676", "287922", "162583", "399871", "520489"}
	for c, w := range want {
		if got := HOTP(secret, uint64(c), 6, sha1.New); got != w {
			t.Errorf("HOTP(counter %d) = %s, want %s", c, got, w)
		}
		// nil means SHA-1.
		if got := HOTP(secret, uint64(c), 6, nil); got != w {
			t.Errorf("HOTP(counter %d, nil hash) = %s, want %s", c, got, w)
		}
	}
}

func TestTOTPRFC6238(t *testing.T) {
	type alg struct {
		name string
		h    func() hash.Hash
		seed []byte
	}
	sha1A := alg{"SHA1", sha1.New, rfcSeed(20)}
	sha256A := alg{"SHA256", sha256.New, rfcSeed(32)}
	sha512A := alg{"SHA512", sha512.New, rfcSeed(64)}
	// RFC 6238 Appendix B, every row: time, T in hex, code, mode.
	tests := []struct {
		unix  int64
		steps string
		code  string
		alg   alg
	}{
		{59, "0000000000000001", "94287082", sha1A},
		{59, "0000000000000001", "46119246", sha256A},
		{59, "0000000000000001", "90693936", sha512A},
		{1111111109, "00000000023523EC", "07081804", sha1A},
		{1111111109, "00000000023523EC", "68084774", sha256A},
		{1111111109, "00000000023523EC", "25091201", sha512A},
		{1111111111, "00000000023523ED", "14050471", sha1A},
		{1111111111, "00000000023523ED", "67062674", sha256A},
		{1111111111, "00000000023523ED", "99943326", sha512A},
		{1234567890, "000000000273EF07", "89005924", sha1A},
		{1234567890, "000000000273EF07", "91819424", sha256A},
		{1234567890, "000000000273EF07", "93441116", sha512A},
		{2000000000, "0000000003F940AA", "69279037", sha1A},
		{2000000000, "0000000003F940AA", "90698825", sha256A},
		{2000000000, "0000000003F940AA", "38618901", sha512A},
		{20000000000, "0000000027BC86AA", "65353130", sha1A},
		{20000000000, "0000000027BC86AA", "77737706", sha256A},
		{20000000000, "0000000027BC86AA", "47863826", sha512A},
	}
	for _, tt := range tests {
		t.Run(tt.alg.name+"/"+strconv.FormatInt(tt.unix, 10), func(t *testing.T) {
			now := time.Unix(tt.unix, 0)
			wantStep, err := strconv.ParseUint(tt.steps, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			if got := Step(now); got != wantStep {
				t.Fatalf("Step = %X, want %s", got, tt.steps)
			}
			if got := HOTP(tt.alg.seed, Step(now), 8, tt.alg.h); got != tt.code {
				t.Errorf("code = %s, want %s", got, tt.code)
			}
			if tt.alg.name == "SHA1" {
				// The 6-digit code is the same truncated value mod 10^6.
				if got := TOTP(tt.alg.seed, now); got != tt.code[2:] {
					t.Errorf("TOTP = %s, want %s", got, tt.code[2:])
				}
			}
		})
	}
}

func TestStep(t *testing.T) {
	tests := []struct {
		unix int64
		want uint64
	}{
		{-31, 0}, {-1, 0}, {0, 0}, {29, 0}, {30, 1}, {59, 1}, {60, 2},
		{1111111109, 37037036},
	}
	for _, tt := range tests {
		if got := Step(time.Unix(tt.unix, 0)); got != tt.want {
			t.Errorf("Step(%d) = %d, want %d", tt.unix, got, tt.want)
		}
	}
	// Sub-second parts and zones do not move the step.
	at := time.Unix(59, 999_999_999).In(time.FixedZone("x", -7*3600))
	if got := Step(at); got != 1 {
		t.Errorf("Step(59.999999999 in -07:00) = %d, want 1", got)
	}
}

func TestHOTPDigitsPadding(t *testing.T) {
	// A code must keep its leading zeros. For every counter and length the
	// code has exactly that many digits and is the tail of the 10-digit
	// code (the whole 31-bit value, zero-padded); the loop also makes sure
	// some 6-digit code actually starts with '0'.
	secret := []byte("12345678901234567890")
	sawLeadingZero := false
	for c := uint64(0); c < 2000; c++ {
		full := HOTP(secret, c, 10, nil)
		for d := 1; d <= 10; d++ {
			got := HOTP(secret, c, d, nil)
			if len(got) != d || got != full[10-d:] {
				t.Fatalf("HOTP(c=%d, digits=%d) = %q, want tail of %q", c, d, got, full)
			}
		}
		if HOTP(secret, c, 6, nil)[0] == '0' {
			sawLeadingZero = true
		}
	}
	if !sawLeadingZero {
		t.Error("no 6-digit code with a leading zero in 2000 counters; padding untested")
	}
}

func TestHOTPBadDigitsPanics(t *testing.T) {
	for _, d := range []int{-1, 0, 11} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("HOTP(digits=%d) did not panic", d)
				}
			}()
			HOTP([]byte("k"), 0, d, nil)
		}()
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 20 || len(b) != 20 {
		t.Fatalf("len = %d, %d, want 20", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Error("two secrets are equal")
	}
	if got := EncodeSecret(a); len(got) != 32 {
		t.Errorf("base32 of 20 bytes has %d characters, want 32", len(got))
	}
}

func TestSecretCodec(t *testing.T) {
	rfc := []byte("12345678901234567890")
	// RFC 4648 §10 vectors, padding removed.
	if got := EncodeSecret([]byte("foobar")); got != "MZXW6YTBOI" {
		t.Errorf("EncodeSecret(foobar) = %s, want MZXW6YTBOI", got)
	}
	tests := []struct {
		in   string
		want []byte // nil: error
	}{
		{"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", rfc},
		{"gezdgnbvgy3tqojqgezdgnbvgy3tqojq", rfc},
		{"gezd gnbv gy3t qojq gezd gnbv gy3t qojq", rfc},
		{" GEZD\tGNBV\nGY3T QOJQ GEZD GNBV GY3T QOJQ\r\n", rfc},
		{"MZXW6YTBOI======", []byte("foobar")},
		{"MZXW6YTBOI", []byte("foobar")},
		{"mzxw6ytboi==", []byte("foobar")},
		{"MY", []byte("f")},
		{"MZ", nil},          // unused low bits set: not canonical
		{"M", nil},           // impossible length
		{"MZX", nil},         // impossible length
		{"", nil},            // empty
		{"  ====", nil},      // only padding
		{"MZ=XW6YTBOI", nil}, // padding in the middle
		{"MZXW6YTB0I", nil},  // digit 0 is not base32
		{"MZXW6YTB1I", nil},  // nor 1
		{"MZXW6YTBOİ", nil},  // non-ASCII never maps to ASCII
	}
	for _, tt := range tests {
		got, err := DecodeSecret(tt.in)
		if tt.want == nil {
			if !errors.Is(err, ErrBadSecret) {
				t.Errorf("DecodeSecret(%q) = %x, %v; want ErrBadSecret", tt.in, got, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("DecodeSecret(%q) = %x, %v; want %x", tt.in, got, err, tt.want)
		}
	}
}

func TestURI(t *testing.T) {
	secret := []byte("12345678901234567890")
	tests := []struct{ issuer, account string }{
		{"azote", "alice"},
		{"Acme Co", "alice@example.com"},
		{"Ops: prod/eu & more?", "bob+mfa@example.com#1"},
		{"100%", "a:b;c,d=e"},
		{"ünïcode", "名前"},
		{"", "lonely"},
	}
	for _, tt := range tests {
		t.Run(tt.issuer+"|"+tt.account, func(t *testing.T) {
			s := URI(tt.issuer, tt.account, secret)
			u, err := url.Parse(s)
			if err != nil {
				t.Fatalf("url.Parse(%q): %v", s, err)
			}
			if u.Scheme != "otpauth" || u.Host != "totp" {
				t.Fatalf("scheme/host = %q/%q in %q", u.Scheme, u.Host, s)
			}
			if u.Fragment != "" || u.Opaque != "" || u.User != nil {
				t.Fatalf("stray URL parts in %q: %+v", s, u)
			}
			// The label's one unescaped colon splits issuer from account.
			label := strings.TrimPrefix(u.EscapedPath(), "/")
			rawIssuer, rawAccount, hasColon := strings.Cut(label, ":")
			if !hasColon {
				rawIssuer, rawAccount = "", label
			}
			if strings.Contains(rawAccount, ":") {
				t.Fatalf("more than one literal colon in label %q", label)
			}
			issuer, err1 := url.PathUnescape(rawIssuer)
			account, err2 := url.PathUnescape(rawAccount)
			if err1 != nil || err2 != nil {
				t.Fatalf("unescape label %q: %v %v", label, err1, err2)
			}
			if issuer != tt.issuer || account != tt.account {
				t.Errorf("label = %q : %q, want %q : %q", issuer, account, tt.issuer, tt.account)
			}
			if strings.Contains(u.RawQuery, "+") {
				t.Errorf("query %q has '+', which some apps show literally", u.RawQuery)
			}
			q := u.Query()
			got, err := DecodeSecret(q.Get("secret"))
			if err != nil || !bytes.Equal(got, secret) {
				t.Errorf("secret param %q decodes to %x, %v", q.Get("secret"), got, err)
			}
			if _, ok := q["issuer"]; ok != (tt.issuer != "") || q.Get("issuer") != tt.issuer {
				t.Errorf("issuer param = %q (present %v), want %q", q.Get("issuer"), ok, tt.issuer)
			}
			for k, want := range map[string]string{"algorithm": "SHA1", "digits": "6", "period": "30"} {
				if q.Get(k) != want {
					t.Errorf("%s = %q, want %q", k, q.Get(k), want)
				}
			}
		})
	}
	// Parameter order as documented: secret first.
	if s := URI("azote", "alice", secret); !strings.HasPrefix(s, "otpauth://totp/azote:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=azote&") {
		t.Errorf("URI = %s", s)
	}
}

// TestOathtool cross-checks against oath-toolkit, an independent
// implementation, when it is installed.
func TestOathtool(t *testing.T) {
	bin, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("oathtool not on PATH (Debian package oathtool); cross-check against it skipped")
	}
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("oathtool %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	for _, unix := range []int64{59, 1111111109, 1234567890, 2000000000, time.Now().Unix()} {
		want := run("--totp", "-b", "--now=@"+strconv.FormatInt(unix, 10), EncodeSecret(secret))
		if got := TOTP(secret, time.Unix(unix, 0)); got != want {
			t.Errorf("TOTP at %d = %s, oathtool says %s", unix, got, want)
		}
	}
	for _, c := range []uint64{0, 1, 7, 1 << 20} {
		want := run("-c", strconv.FormatUint(c, 10), hex.EncodeToString(secret))
		if got := HOTP(secret, c, 6, nil); got != want {
			t.Errorf("HOTP counter %d = %s, oathtool says %s", c, got, want)
		}
	}
}
