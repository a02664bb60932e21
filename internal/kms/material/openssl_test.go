package material

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azote/azote/internal/testutil"
)

// These tests run the openssl command line, the tool AWS's own
// instructions use to make import material and to check signatures, on
// what this package makes and on what openssl makes.

func requireOpenSSL(t *testing.T) {
	t.Helper()
	testutil.RequiresCommand(t, "openssl", "openssl")
}

// runOpenSSL runs openssl with args and returns its standard output.
func runOpenSSL(args ...string) ([]byte, error) {
	cmd := exec.Command("openssl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("openssl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func mustOpenSSL(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := runOpenSSL(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyFiles writes the material's private key (PKCS #8) and public key
// (SubjectPublicKeyInfo) as PEM, the form every openssl command reads.
func keyFiles(t *testing.T, dir string, s Spec, material []byte) (priv, pub string) {
	t.Helper()
	spki, err := PublicKey(s, material)
	if err != nil {
		t.Fatal(err)
	}
	priv = writeFile(t, dir, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: material}))
	pub = writeFile(t, dir, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
	return priv, pub
}

func oaepOpts(alg string) []string {
	md := "sha256"
	if strings.HasSuffix(alg, "SHA_1") {
		md = "sha1"
	}
	return []string{"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:" + md, "-pkeyopt", "rsa_mgf1_md:" + md}
}

// TestOpenSSLOAEP: openssl's RSA-OAEP ciphertexts decrypt with
// AsymDecrypt, AsymEncrypt's decrypt with openssl, and both agree on the
// longest plaintext each key and hash can take (AWS's documented limits).
func TestOpenSSLOAEP(t *testing.T) {
	requireOpenSSL(t)
	for _, s := range rsaSpecs {
		m := testMaterial(t, s)
		dir := t.TempDir()
		priv, pub := keyFiles(t, dir, s, m)
		for alg, limit := range oaepLimits[s] {
			pt := make([]byte, limit)
			rand.Read(pt)
			ptFile := writeFile(t, dir, "pt", pt)

			ctFile := filepath.Join(dir, "ct")
			mustOpenSSL(t, append([]string{"pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", ptFile, "-out", ctFile}, oaepOpts(alg)...)...)
			got, err := AsymDecrypt(s, m, alg, readFile(t, ctFile))
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%s %s: AsymDecrypt of openssl's ciphertext = %x, %v", s, alg, got, err)
			}

			ct, err := AsymEncrypt(s, m, alg, pt)
			if err != nil {
				t.Fatal(err)
			}
			ctFile = writeFile(t, dir, "ct", ct)
			got = mustOpenSSL(t, append([]string{"pkeyutl", "-decrypt", "-inkey", priv, "-in", ctFile}, oaepOpts(alg)...)...)
			if !bytes.Equal(got, pt) {
				t.Fatalf("%s %s: openssl decrypts AsymEncrypt's ciphertext to %x", s, alg, got)
			}

			over := writeFile(t, dir, "over", make([]byte, limit+1))
			if _, err := runOpenSSL(append([]string{"pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", over}, oaepOpts(alg)...)...); err == nil {
				t.Fatalf("%s %s: openssl encrypts %d bytes, so AWS's limit is not OAEP's", s, alg, limit+1)
			}
		}
	}
}

func opensslDigest(alg string) string {
	switch {
	case strings.HasSuffix(alg, "_256"):
		return "sha256"
	case strings.HasSuffix(alg, "_384"):
		return "sha384"
	}
	return "sha512"
}

// TestOpenSSLSignatures: every signature Sign makes, RAW and DIGEST,
// verifies with openssl (dgst -verify for the message, pkeyutl -verify for
// the digest; PSS with the salt as long as the digest), and openssl's
// signatures verify with Verify.
func TestOpenSSLSignatures(t *testing.T) {
	requireOpenSSL(t)
	msg := []byte("a message signed by azote and checked by openssl")
	for _, tc := range signCases() {
		t.Run(fmt.Sprintf("%s/%s", tc.s, tc.alg), func(t *testing.T) {
			m := testMaterial(t, tc.s)
			dir := t.TempDir()
			priv, pub := keyFiles(t, dir, tc.s, m)
			md := opensslDigest(tc.alg)
			var sigopt, pkeyopt []string
			switch signingAlgs[tc.alg].scheme {
			case pss:
				sigopt = []string{"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"}
				pkeyopt = []string{"-pkeyopt", "digest:" + md, "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest"}
			case pkcs1v15:
				pkeyopt = []string{"-pkeyopt", "digest:" + md}
			}
			msgFile := writeFile(t, dir, "msg", msg)
			h := signingAlgs[tc.alg].hash.New()
			h.Write(msg)
			digest := h.Sum(nil)
			digestFile := writeFile(t, dir, "digest", digest)

			sig, err := Sign(tc.s, m, tc.alg, "RAW", msg)
			if err != nil {
				t.Fatal(err)
			}
			sigFile := writeFile(t, dir, "sig", sig)
			mustOpenSSL(t, append([]string{"dgst", "-" + md, "-verify", pub, "-signature", sigFile}, append(sigopt, msgFile)...)...)

			dsig, err := Sign(tc.s, m, tc.alg, "DIGEST", digest)
			if err != nil {
				t.Fatal(err)
			}
			dsigFile := writeFile(t, dir, "dsig", dsig)
			mustOpenSSL(t, append([]string{"pkeyutl", "-verify", "-pubin", "-inkey", pub, "-in", digestFile, "-sigfile", dsigFile}, pkeyopt...)...)

			// A signature openssl rejects is still rejected when it comes
			// from Sign: flip a byte and openssl must say no.
			bad := bytes.Clone(sig)
			bad[4] ^= 1
			if _, err := runOpenSSL(append([]string{"dgst", "-" + md, "-verify", pub, "-signature", writeFile(t, dir, "bad", bad)}, append(sigopt, msgFile)...)...); err == nil {
				t.Fatal("openssl verified a corrupted signature: the check above proves nothing")
			}

			osig := filepath.Join(dir, "osig")
			mustOpenSSL(t, append([]string{"dgst", "-" + md, "-sign", priv, "-out", osig}, append(sigopt, msgFile)...)...)
			if ok, err := Verify(tc.s, m, tc.alg, "RAW", msg, readFile(t, osig)); !ok || err != nil {
				t.Fatalf("openssl's signature: Verify RAW = %v, %v", ok, err)
			}
			if ok, err := Verify(tc.s, m, tc.alg, "DIGEST", digest, readFile(t, osig)); !ok || err != nil {
				t.Fatalf("openssl's signature: Verify DIGEST = %v, %v", ok, err)
			}

			if signingAlgs[tc.alg].scheme == pss {
				// AWS's PSS salt is the digest length; a signature with the
				// longest salt the key allows is a different scheme.
				mustOpenSSL(t, "dgst", "-"+md, "-sign", priv, "-out", osig,
					"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max", msgFile)
				if ok, err := Verify(tc.s, m, tc.alg, "RAW", msg, readFile(t, osig)); ok || err != nil {
					t.Fatalf("PSS with the maximal salt: Verify = %v, %v; want false", ok, err)
				}
			}
		})
	}
}

// TestOpenSSLHMAC: Mac equals `openssl dgst -<hash> -mac HMAC -macopt
// hexkey:...` for every HMAC spec, at the shortest and longest key an
// import may bring and for an empty and a 4096-byte message.
func TestOpenSSLHMAC(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	long := make([]byte, 4096)
	rand.Read(long)
	messages := map[string][]byte{"empty": nil, "short": []byte("GenerateMac"), "4096 bytes": long}
	for _, s := range []Spec{HMAC224, HMAC256, HMAC384, HMAC512} {
		info := specs[s]
		alg := MacAlgorithms(s)[0]
		md := map[Spec]string{HMAC224: "sha224", HMAC256: "sha256", HMAC384: "sha384", HMAC512: "sha512"}[s]
		for _, keyLen := range []int{info.size, info.hmacMax} {
			key := make([]byte, keyLen)
			rand.Read(key)
			for name, msg := range messages {
				f := writeFile(t, dir, "msg", msg)
				out := strings.Fields(string(mustOpenSSL(t, "dgst", "-"+md, "-mac", "HMAC", "-macopt", "hexkey:"+hex.EncodeToString(key), f)))
				want := out[len(out)-1]
				got, err := Mac(s, key, alg, msg)
				if err != nil || hex.EncodeToString(got) != want {
					t.Fatalf("%s, %d-byte key, %s message: Mac = %x, %v; openssl says %s", s, keyLen, name, got, err, want)
				}
				wantBytes, _ := hex.DecodeString(want)
				if ok, err := VerifyMac(s, key, alg, msg, wantBytes); !ok || err != nil {
					t.Fatalf("%s: VerifyMac of openssl's MAC = %v, %v", s, ok, err)
				}
			}
		}
	}
}

// TestOpenSSLKeyWrapPad: wrapPad matches `openssl enc -id-aes*-wrap-pad`
// on RFC 5649's vectors and on every length from 1 to 70 bytes, and
// unwrapPad reads openssl's output.
func TestOpenSSLKeyWrapPad(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	for _, v := range rfc5649Vectors {
		in := writeFile(t, dir, "in", unhex(t, v.key))
		got := mustOpenSSL(t, "enc", "-id-aes192-wrap-pad", "-K", v.kek, "-iv", "A65959A6", "-in", in)
		if hex.EncodeToString(got) != v.wrap {
			t.Fatalf("openssl wraps RFC 5649's %s to %x, the RFC says %s", v.key, got, v.wrap)
		}
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	for n := 1; n <= 70; n++ {
		p := make([]byte, n)
		rand.Read(p)
		in := writeFile(t, dir, "in", p)
		theirs := mustOpenSSL(t, "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(kek), "-iv", "A65959A6", "-in", in)
		ours, err := wrapPad(kek, p)
		if err != nil || !bytes.Equal(ours, theirs) {
			t.Fatalf("%d bytes: wrapPad = %x, %v; openssl %x", n, ours, err, theirs)
		}
		if back, err := unwrapPad(kek, theirs); err != nil || !bytes.Equal(back, p) {
			t.Fatalf("%d bytes: unwrapPad of openssl's = %x, %v", n, back, err)
		}
	}
}

// TestOpenSSLImport follows AWS's openssl instructions for encrypting key
// material ("importing-keys-encrypt-key-material") with each wrapping
// algorithm, on material openssl made, and checks that UnwrapImport
// recovers it and Validate accepts it for its spec.
func TestOpenSSLImport(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	rsaKey := filepath.Join(dir, "rsa.pem")
	mustOpenSSL(t, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsaKey)
	ecKey := filepath.Join(dir, "ec.pem")
	mustOpenSSL(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", ecKey)
	materials := []struct {
		name string
		s    Spec
		file string
	}{
		{"symmetric", SymmetricDefault, filepath.Join(dir, "sym.bin")},
		{"HMAC_224", HMAC224, filepath.Join(dir, "hmac.bin")},
		{"RSA_2048 private key", RSA2048, filepath.Join(dir, "rsa.der")},
		{"ECC_NIST_P384 private key", ECCNISTP384, filepath.Join(dir, "ec.der")},
	}
	mustOpenSSL(t, "rand", "-out", materials[0].file, "32")
	mustOpenSSL(t, "rand", "-out", materials[1].file, "28")
	// AWS: "openssl pkcs8 -topk8 -outform der -nocrypt" for asymmetric keys.
	mustOpenSSL(t, "pkcs8", "-topk8", "-outform", "der", "-nocrypt", "-in", rsaKey, "-out", materials[2].file)
	mustOpenSSL(t, "pkcs8", "-topk8", "-outform", "der", "-nocrypt", "-in", ecKey, "-out", materials[3].file)

	for _, wrapSpec := range []Spec{RSA2048, RSA4096} {
		wrapPriv := testMaterial(t, wrapSpec)
		spki, err := PublicKey(wrapSpec, wrapPriv)
		if err != nil {
			t.Fatal(err)
		}
		// GetParametersForImport's PublicKey is DER; the recipe uses it as is.
		wrapPub := writeFile(t, dir, "WrappingPublicKey.bin", spki)
		for _, alg := range importAlgs {
			for _, mat := range materials {
				plain := readFile(t, mat.file)
				out := filepath.Join(dir, "EncryptedKeyMaterial.bin")
				if strings.HasPrefix(alg, "RSAES_OAEP") {
					if len(plain) > 32 {
						continue // AWS: RSAES_OAEP_* cannot carry an asymmetric private key
					}
					mustOpenSSL(t, append([]string{"pkeyutl", "-encrypt", "-in", mat.file, "-out", out,
						"-inkey", wrapPub, "-keyform", "DER", "-pubin"}, oaepOpts(alg)...)...)
				} else {
					aesKey := filepath.Join(dir, "aes-key.bin")
					mustOpenSSL(t, "rand", "-out", aesKey, "32")
					kwp := filepath.Join(dir, "key-material-wrapped.bin")
					mustOpenSSL(t, "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(readFile(t, aesKey)),
						"-iv", "A65959A6", "-in", mat.file, "-out", kwp)
					aesWrapped := filepath.Join(dir, "aes-key-wrapped.bin")
					mustOpenSSL(t, append([]string{"pkeyutl", "-encrypt", "-in", aesKey, "-out", aesWrapped,
						"-inkey", wrapPub, "-keyform", "DER", "-pubin"}, oaepOpts(alg)...)...)
					writeFile(t, dir, "EncryptedKeyMaterial.bin", append(readFile(t, aesWrapped), readFile(t, kwp)...))
				}
				got, err := UnwrapImport(wrapPriv, alg, readFile(t, out))
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("%s wrapping key, %s, %s: UnwrapImport = %x, %v", wrapSpec, alg, mat.name, got, err)
				}
				if err := Validate(mat.s, got); err != nil {
					t.Fatalf("%s: Validate(%s) of openssl's material: %v", mat.name, mat.s, err)
				}
			}
		}
	}
}

// TestOpenSSLKeys: openssl reads the PKCS #8 material Generate makes and
// derives the same SubjectPublicKeyInfo as PublicKey; and Validate
// accepts openssl's own keys for their spec only.
func TestOpenSSLKeys(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	for _, s := range asymSpecs {
		m := testMaterial(t, s)
		f := writeFile(t, dir, "m.der", m)
		theirs := mustOpenSSL(t, "pkey", "-inform", "DER", "-in", f, "-pubout", "-outform", "DER")
		ours, err := PublicKey(s, m)
		if err != nil || !bytes.Equal(ours, theirs) {
			t.Fatalf("%s: PublicKey = %x, %v; openssl %x", s, ours, err, theirs)
		}
	}
	for _, tc := range []struct {
		s    Spec
		args []string
	}{
		{RSA2048, []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}},
		{ECCNISTP256, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}},
		{ECCNISTP384, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"}},
		{ECCNISTP521, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"}},
	} {
		// genpkey's DER is the traditional form (PKCS #1, SEC 1), which AWS
		// does not take either: users convert it with pkcs8 -topk8.
		traditional := mustOpenSSL(t, append(append([]string{"genpkey"}, tc.args...), "-outform", "DER")...)
		if err := Validate(tc.s, traditional); !errors.Is(err, ErrInvalidMaterial) {
			t.Errorf("Validate(%s) of a key in openssl's traditional DER form: %v, want ErrInvalidMaterial", tc.s, err)
		}
		der := mustOpenSSL(t, "pkcs8", "-topk8", "-nocrypt", "-inform", "DER", "-outform", "DER", "-in", writeFile(t, dir, "trad.der", traditional))
		for _, s := range asymSpecs {
			err := Validate(s, der)
			if s == tc.s && err != nil {
				t.Errorf("Validate(%s) of openssl's %s key: %v", s, tc.s, err)
			}
			if s != tc.s && err == nil {
				t.Errorf("Validate(%s) accepted openssl's %s key", s, tc.s)
			}
		}
		f := writeFile(t, dir, "k.der", der)
		theirs := mustOpenSSL(t, "pkey", "-inform", "DER", "-in", f, "-pubout", "-outform", "DER")
		if ours, err := PublicKey(tc.s, der); err != nil || !bytes.Equal(ours, theirs) {
			t.Errorf("%s: PublicKey of openssl's key = %x, %v; openssl %x", tc.s, ours, err, theirs)
		}
	}
}
