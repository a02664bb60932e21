package keypairs

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
	"golang.org/x/crypto/ssh"
)

func newService(t *testing.T) *Service {
	t.Helper()
	db, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db)
}

// tool runs a command of the host's OpenSSH or OpenSSL, or skips the
// test saying which is missing.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed: the fingerprints are checked against its output", name)
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sh(t *testing.T, script string) string {
	t.Helper()
	for _, n := range []string{"openssl", "ssh-keygen"} {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed: the fingerprints are checked against its output", n)
		}
	}
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// opensslDigest is the colon hex of "openssl md5 -c"/"sha1 -c" output
// ("(stdin)= aa:bb:…" or "MD5(stdin)= …").
func opensslDigest(out string) string {
	_, d, _ := strings.Cut(strings.TrimSpace(out), "= ")
	return d
}

// keygen makes a key pair with ssh-keygen in dir and returns the path of
// its private key.
func keygen(t *testing.T, dir, typ string, bits int) string {
	path := filepath.Join(dir, typ)
	args := []string{"-q", "-t", typ, "-N", "", "-C", "user@example", "-f", path}
	if bits > 0 {
		args = append(args, "-b", itoa(bits))
	}
	tool(t, "ssh-keygen", args...)
	return path
}

func itoa(n int) string {
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}

// An imported ed25519 key is fingerprinted as ssh-keygen -E sha256
// prints it (EC2 pads the base64 and drops "SHA256:"); an imported RSA
// key with the MD5 of its DER public key, as EC2's guide computes it
// with openssl — which is not ssh-keygen's -E md5.
func TestImportFingerprints(t *testing.T) {
	s := newService(t)
	dir := t.TempDir()

	ed := keygen(t, dir, "ed25519", 0)
	pub, _ := os.ReadFile(ed + ".pub")
	kp, err := s.Import(api.ImportKeyPairRequest{KeyName: "ed", PublicKeyMaterial: string(pub)})
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(tool(t, "ssh-keygen", "-l", "-E", "sha256", "-f", ed+".pub"))[1]
	want := strings.TrimPrefix(f, "SHA256:")
	want += strings.Repeat("=", (4-len(want)%4)%4)
	if kp.KeyType != api.KeyTypeED25519 || kp.KeyFingerprint != want {
		t.Errorf("ed25519: %s %q, want ed25519 %q (ssh-keygen: %s)", kp.KeyType, kp.KeyFingerprint, want, f)
	}
	if want := strings.Join(strings.Fields(string(pub))[:2], " "); kp.PublicKey != want {
		t.Errorf("public key %q, want %q", kp.PublicKey, want)
	}

	rsaKey := keygen(t, dir, "rsa", 3072)
	pub, _ = os.ReadFile(rsaKey + ".pub")
	kp, err = s.Import(api.ImportKeyPairRequest{KeyName: "rsa", PublicKeyMaterial: string(pub)})
	if err != nil {
		t.Fatal(err)
	}
	want = opensslDigest(sh(t, "ssh-keygen -e -m PKCS8 -f "+rsaKey+".pub | openssl pkey -pubin -outform DER | openssl md5 -c"))
	if kp.KeyType != api.KeyTypeRSA || kp.KeyFingerprint != want {
		t.Errorf("rsa: %s %q, want rsa %q", kp.KeyType, kp.KeyFingerprint, want)
	}
	sshMD5 := strings.TrimPrefix(strings.Fields(tool(t, "ssh-keygen", "-l", "-E", "md5", "-f", rsaKey+".pub"))[1], "MD5:")
	if sshMD5 == kp.KeyFingerprint || len(sshMD5) != len(kp.KeyFingerprint) {
		t.Errorf("ssh-keygen -E md5 %q: expected a different digest of the same form as EC2's %q", sshMD5, kp.KeyFingerprint)
	}
}

// A created RSA pair's fingerprint is the SHA-1 of its PKCS#8 private
// key, as EC2's guide checks it with openssl from the key it was given;
// a created ed25519 pair's is OpenSSH's. The private key is usable by
// OpenSSH and is not kept.
func TestCreate(t *testing.T) {
	s := newService(t)
	dir := t.TempDir()

	out, err := s.Create(api.CreateKeyPairRequest{KeyName: "made-rsa", KeyType: api.KeyTypeRSA})
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "rsa.pem")
	os.WriteFile(key, []byte(out.KeyMaterial), 0o600)
	want := opensslDigest(sh(t, "openssl pkcs8 -in "+key+" -inform PEM -outform DER -topk8 -nocrypt | openssl sha1 -c"))
	if !out.Created || out.KeyFingerprint != want {
		t.Errorf("created rsa: fingerprint %q, want %q", out.KeyFingerprint, want)
	}
	if got := strings.TrimSpace(tool(t, "ssh-keygen", "-y", "-f", key)); got != out.PublicKey {
		t.Errorf("ssh-keygen -y: %q, want the pair's public key %q", got, out.PublicKey)
	}

	out, err = s.Create(api.CreateKeyPairRequest{KeyName: "made-ed"})
	if err != nil {
		t.Fatal(err)
	}
	key = filepath.Join(dir, "ed")
	os.WriteFile(key, []byte(out.KeyMaterial), 0o600)
	f := strings.Fields(tool(t, "ssh-keygen", "-l", "-E", "sha256", "-f", key))[1]
	if out.KeyType != api.KeyTypeED25519 || strings.TrimRight(out.KeyFingerprint, "=") != strings.TrimPrefix(f, "SHA256:") {
		t.Errorf("created ed25519: %s %q, ssh-keygen says %s", out.KeyType, out.KeyFingerprint, f)
	}

	// Nothing stored holds a private key.
	s.store.View(func(tx store.Tx) error {
		return tx.ForEach(Table, func(_ string, raw []byte) error {
			if strings.Contains(string(raw), "PRIVATE") || strings.Contains(string(raw), "key_material") {
				t.Errorf("stored record holds a private key: %s", raw)
			}
			return nil
		})
	})
	list, _ := s.List()
	if len(list) != 2 || list[0].KeyName != "made-rsa" || list[1].KeyName != "made-ed" {
		t.Errorf("list: %+v", list)
	}
}

// Bad keys and names are refused with their stable kinds, and nothing is
// made.
func TestImportRefusals(t *testing.T) {
	s := newService(t)
	dir := t.TempDir()
	ecdsa := keygen(t, dir, "ecdsa", 0)
	ecdsaPub, _ := os.ReadFile(ecdsa + ".pub")
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPub, _ := ssh.NewPublicKey(&small.PublicKey)
	ed := keygen(t, dir, "ed25519", 0)
	edPub, _ := os.ReadFile(ed + ".pub")
	if _, err := s.Import(api.ImportKeyPairRequest{KeyName: "first", PublicKeyMaterial: string(edPub)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, material string
		want           error
	}{
		{"ecdsa", string(ecdsaPub), ErrUnsupportedType},
		{"dsa", "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACBAN0jQwG3OtHdHUaS0r7vAkSBGWDMKBVhOcrpRKzZrfhF6eU+0nT35K2Dvwz/mXkPUf6Y1b9A9GSf7IkAOxrHzWzuGMW+gbm9mMSx9Kwlp41oPY1NkFx2iHvzOzPRRrbCrtdC/G+qE8WoK+Hcp0h7YIrnmBaUEqf8WDj3k5L5SAUl user", ErrUnsupportedType},
		{"short", string(ssh.MarshalAuthorizedKey(smallPub)), ErrUnsupportedType},
		{"garbage", "not a key", ErrInvalidFormat},
		{"two", string(edPub) + string(edPub), ErrInvalidFormat},
		{"opts", "no-pty " + string(edPub), ErrInvalidFormat},
		{"huge", strings.Repeat("A", MaxPublicKeyMaterial+1), ErrInvalidFormat},
		{"first", string(edPub), refusal.ErrNameInUse},
		{"bad name!", string(edPub), refusal.ErrInvalidName},
		{"key-0123456789abcdef0", string(edPub), refusal.ErrInvalidName},
		{"", string(edPub), refusal.ErrInvalidParameter},
	} {
		_, err := s.Import(api.ImportKeyPairRequest{KeyName: c.name, PublicKeyMaterial: c.material})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := s.Create(api.CreateKeyPairRequest{KeyName: "dsa", KeyType: "dsa"}); !errors.Is(err, refusal.ErrInvalidParameter) {
		t.Errorf("create dsa: %v", err)
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Errorf("refusals left %d pairs, want 1", len(list))
	}
}

func TestResolveAndDelete(t *testing.T) {
	s := newService(t)
	out, err := s.Create(api.CreateKeyPairRequest{KeyName: "k", Tags: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.ID, api.KeyPairIDPrefix) || len(out.ID) != api.IDLen(api.KeyPairIDPrefix) {
		t.Errorf("id %q", out.ID)
	}
	for _, ref := range []string{"k", out.ID} {
		kp, err := s.Resolve(ref)
		if err != nil || kp.ID != out.ID || kp.Tags["team"] != "a" {
			t.Errorf("resolve %s: %+v %v", ref, kp, err)
		}
	}
	if _, err := s.Delete(out.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve("k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("resolve after delete: %v", err)
	}
	if _, err := s.Delete(out.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete again: %v", err)
	}
	// The name is free again.
	if _, err := s.Create(api.CreateKeyPairRequest{KeyName: "k"}); err != nil {
		t.Error(err)
	}
}

// FuzzParsePublicKey: whatever a caller sends as key material is
// answered with a key or a refusal of this package, never a panic.
func FuzzParsePublicKey(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0a8WbVGDJkVZs9RmvXxDAcPAl/JDYwmSvCyAOmKyN x")
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC+Eo/RZRngaGTkFs7I62ZjsIlO79KklKbMXi8F+KITD4bVQHHn+kV+4gRgkgCRbdoDqoGfpaDFs877DYX9n4z6FrAIZ4PES8TNKhatifpn9NdQYWA+IkU8CuvlEKGuFpKRi/k7JLos/gHi2hy7QUwgtRvcefvD/vgQZOVw/mGR9Q==")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParsePublicKey(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) && !errors.Is(err, ErrUnsupportedType) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if pub.Type() != ssh.KeyAlgoED25519 && pub.Type() != ssh.KeyAlgoRSA {
			t.Fatalf("accepted a %s key", pub.Type())
		}
	})
}
