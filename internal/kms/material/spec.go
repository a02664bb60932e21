package material

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // crypto.Hash.New panics for a hash not linked in
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// Spec is a KMS key spec, by its AWS name.
type Spec string

// The key specs azote supports. AWS's ECC_SECG_P256K1, SM2 and ML_DSA_*
// are not among them: every function answers ErrUnsupported for those.
const (
	SymmetricDefault Spec = "SYMMETRIC_DEFAULT"
	HMAC224          Spec = "HMAC_224"
	HMAC256          Spec = "HMAC_256"
	HMAC384          Spec = "HMAC_384"
	HMAC512          Spec = "HMAC_512"
	RSA2048          Spec = "RSA_2048"
	RSA3072          Spec = "RSA_3072"
	RSA4096          Spec = "RSA_4096"
	ECCNISTP256      Spec = "ECC_NIST_P256"
	ECCNISTP384      Spec = "ECC_NIST_P384"
	ECCNISTP521      Spec = "ECC_NIST_P521"
)

// Usage is a KMS key usage, by its AWS name.
type Usage string

// The key usages azote supports (not AWS's KEY_AGREEMENT).
const (
	EncryptDecrypt    Usage = "ENCRYPT_DECRYPT"
	SignVerify        Usage = "SIGN_VERIFY"
	GenerateVerifyMac Usage = "GENERATE_VERIFY_MAC"
)

// The errors every function wraps, for the service to map with errors.Is.
var (
	// ErrUnsupported: a spec, usage, spec/usage pair, message type or
	// import algorithm azote does not offer.
	ErrUnsupported = errors.New("material: unsupported")
	// ErrInvalidAlgorithm: the algorithm is not one this key's spec
	// allows (AWS's InvalidKeyUsageException).
	ErrInvalidAlgorithm = errors.New("material: algorithm not valid for this key")
	// ErrInvalidCiphertext: an asymmetric ciphertext, or imported key
	// material, that does not decrypt under the key.
	ErrInvalidCiphertext = errors.New("material: invalid ciphertext")
	// ErrInvalidMaterial: material that does not have the shape its spec
	// needs (the wrong length, key type, curve or modulus size).
	ErrInvalidMaterial = errors.New("material: invalid key material")
	// ErrTooLarge: a plaintext or message over AWS's limit.
	ErrTooLarge = errors.New("material: input too large")
	// ErrInvalidMessage: a DIGEST message whose length is not the
	// algorithm's digest length (AWS answers ValidationException).
	ErrInvalidMessage = errors.New("material: message not valid for this algorithm")
)

// maxMessage is AWS's limit on a message to Sign, Verify, GenerateMac and
// VerifyMac.
const maxMessage = 4096

type family int

const (
	symmetric family = iota + 1
	hmacKey
	rsaKey
	eccKey
)

// specInfo is what the code needs to know of a spec.
type specInfo struct {
	family family
	size   int            // bytes of symmetric or generated HMAC material; RSA modulus bits
	hash   crypto.Hash    // HMAC's hash; ECDSA's one signing hash
	curve  elliptic.Curve // ECC
	// hmacMax is the longest HMAC key an import may bring: the hash's
	// block size. AWS accepts from the digest length up to that.
	hmacMax int
}

var specs = map[Spec]specInfo{
	SymmetricDefault: {family: symmetric, size: 32},
	HMAC224:          {family: hmacKey, size: 28, hash: crypto.SHA224, hmacMax: 64},
	HMAC256:          {family: hmacKey, size: 32, hash: crypto.SHA256, hmacMax: 64},
	HMAC384:          {family: hmacKey, size: 48, hash: crypto.SHA384, hmacMax: 128},
	HMAC512:          {family: hmacKey, size: 64, hash: crypto.SHA512, hmacMax: 128},
	RSA2048:          {family: rsaKey, size: 2048},
	RSA3072:          {family: rsaKey, size: 3072},
	RSA4096:          {family: rsaKey, size: 4096},
	ECCNISTP256:      {family: eccKey, hash: crypto.SHA256, curve: elliptic.P256()},
	ECCNISTP384:      {family: eccKey, hash: crypto.SHA384, curve: elliptic.P384()},
	ECCNISTP521:      {family: eccKey, hash: crypto.SHA512, curve: elliptic.P521()},
}

func lookup(s Spec) (specInfo, error) {
	info, ok := specs[s]
	if !ok {
		return specInfo{}, fmt.Errorf("%w: key spec %q", ErrUnsupported, s)
	}
	return info, nil
}

// ValidPair says whether a key of spec s may have usage u, as in AWS:
// SYMMETRIC_DEFAULT encrypts, HMAC keys make MACs, RSA keys encrypt or
// sign, ECC keys sign. Anything else wraps ErrUnsupported.
func ValidPair(s Spec, u Usage) error {
	info, err := lookup(s)
	if err != nil {
		return err
	}
	ok := false
	switch u {
	case EncryptDecrypt:
		ok = info.family == symmetric || info.family == rsaKey
	case SignVerify:
		ok = info.family == rsaKey || info.family == eccKey
	case GenerateVerifyMac:
		ok = info.family == hmacKey
	default:
		return fmt.Errorf("%w: key usage %q", ErrUnsupported, u)
	}
	if !ok {
		return fmt.Errorf("%w: key usage %s is not valid for key spec %s", ErrUnsupported, u, s)
	}
	return nil
}

// Generate makes new material for spec s: random bytes for
// SYMMETRIC_DEFAULT and HMAC (as long as the digest for HMAC, as AWS
// generates), a PKCS #8 DER private key for RSA and ECC.
func Generate(s Spec) ([]byte, error) {
	info, err := lookup(s)
	if err != nil {
		return nil, err
	}
	switch info.family {
	case symmetric, hmacKey:
		return randomBytes(info.size)
	case rsaKey:
		k, err := rsa.GenerateKey(rand.Reader, info.size)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(k)
	default:
		k, err := ecdsa.GenerateKey(info.curve, rand.Reader)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(k)
	}
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// Validate checks material a client imported for a key of spec s:
// SYMMETRIC_DEFAULT needs exactly 32 bytes; an HMAC key from the digest
// length up to the hash's block size (28-64 bytes for HMAC_224, 32-64 for
// HMAC_256, 48-128 for HMAC_384, 64-128 for HMAC_512), as AWS accepts; RSA
// and ECC a PKCS #8 DER private key, with nothing after it, of the spec's
// modulus size or curve. Anything else wraps ErrInvalidMaterial.
func Validate(s Spec, material []byte) error {
	info, err := lookup(s)
	if err != nil {
		return err
	}
	switch info.family {
	case symmetric:
		if len(material) != info.size {
			return fmt.Errorf("%w: %d bytes for %s, want %d", ErrInvalidMaterial, len(material), s, info.size)
		}
	case hmacKey:
		if len(material) < info.size || len(material) > info.hmacMax {
			return fmt.Errorf("%w: %d bytes for %s, want %d to %d", ErrInvalidMaterial, len(material), s, info.size, info.hmacMax)
		}
	default:
		_, err := parsePrivate(s, info, material)
		return err
	}
	return nil
}

// parsePrivate parses material as a PKCS #8 private key of spec s: an
// *rsa.PrivateKey with the spec's modulus size, or an *ecdsa.PrivateKey
// on the spec's curve.
func parsePrivate(s Spec, info specInfo, material []byte) (crypto.Signer, error) {
	// ParsePKCS8PrivateKey ignores bytes after the key; the material must
	// be the key and nothing else, so that one key has one encoding.
	var outer asn1.RawValue
	if rest, err := asn1.Unmarshal(material, &outer); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: not one DER value", ErrInvalidMaterial)
	}
	k, err := x509.ParsePKCS8PrivateKey(material)
	if err != nil {
		return nil, fmt.Errorf("%w: not a PKCS #8 private key: %v", ErrInvalidMaterial, err)
	}
	switch info.family {
	case rsaKey:
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: a %T for %s", ErrInvalidMaterial, k, s)
		}
		if rk.N.BitLen() != info.size {
			return nil, fmt.Errorf("%w: a %d-bit RSA key for %s", ErrInvalidMaterial, rk.N.BitLen(), s)
		}
		// Two primes, as every RSA tool makes; Go deprecated the others.
		if len(rk.Primes) != 2 {
			return nil, fmt.Errorf("%w: a %d-prime RSA key", ErrInvalidMaterial, len(rk.Primes))
		}
		return rk, nil
	case eccKey:
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: a %T for %s", ErrInvalidMaterial, k, s)
		}
		if ek.Curve.Params().Name != info.curve.Params().Name {
			return nil, fmt.Errorf("%w: a %s key for %s", ErrInvalidMaterial, ek.Curve.Params().Name, s)
		}
		return ek, nil
	}
	return nil, fmt.Errorf("%w: %s is not an asymmetric key spec", ErrInvalidMaterial, s)
}

// The algorithm names, as AWS spells them.
const (
	algSymmetricDefault = "SYMMETRIC_DEFAULT"
	algOAEPSHA1         = "RSAES_OAEP_SHA_1"
	algOAEPSHA256       = "RSAES_OAEP_SHA_256"
	algPSSSHA256        = "RSASSA_PSS_SHA_256"
	algPSSSHA384        = "RSASSA_PSS_SHA_384"
	algPSSSHA512        = "RSASSA_PSS_SHA_512"
	algPKCS1SHA256      = "RSASSA_PKCS1_V1_5_SHA_256"
	algPKCS1SHA384      = "RSASSA_PKCS1_V1_5_SHA_384"
	algPKCS1SHA512      = "RSASSA_PKCS1_V1_5_SHA_512"
	algECDSASHA256      = "ECDSA_SHA_256"
	algECDSASHA384      = "ECDSA_SHA_384"
	algECDSASHA512      = "ECDSA_SHA_512"
	algHMACSHA224       = "HMAC_SHA_224"
	algHMACSHA256       = "HMAC_SHA_256"
	algHMACSHA384       = "HMAC_SHA_384"
	algHMACSHA512       = "HMAC_SHA_512"
	algKeyWrapSHA1      = "RSA_AES_KEY_WRAP_SHA_1"
	algKeyWrapSHA256    = "RSA_AES_KEY_WRAP_SHA_256"
)

// EncryptionAlgorithms lists the encryption algorithms a key of spec s
// and usage u allows, in AWS's order: SYMMETRIC_DEFAULT for a symmetric
// key, the two RSA-OAEP algorithms for an RSA ENCRYPT_DECRYPT key, and
// none (nil) for any other key.
func EncryptionAlgorithms(s Spec, u Usage) []string {
	if u != EncryptDecrypt {
		return nil
	}
	switch specs[s].family {
	case symmetric:
		return []string{algSymmetricDefault}
	case rsaKey:
		return []string{algOAEPSHA1, algOAEPSHA256}
	}
	return nil
}

// SigningAlgorithms lists the signing algorithms a key of spec s and
// usage u allows, in AWS's order; nil for a key that does not sign.
func SigningAlgorithms(s Spec, u Usage) []string {
	if u != SignVerify {
		return nil
	}
	switch info := specs[s]; info.family {
	case rsaKey:
		return []string{algPSSSHA256, algPSSSHA384, algPSSSHA512, algPKCS1SHA256, algPKCS1SHA384, algPKCS1SHA512}
	case eccKey:
		return []string{ecdsaAlgorithm(info.hash)}
	}
	return nil
}

// MacAlgorithms lists the one MAC algorithm of an HMAC key spec; nil for
// any other spec.
func MacAlgorithms(s Spec) []string {
	info := specs[s]
	if info.family != hmacKey {
		return nil
	}
	return []string{hmacAlgorithm(info.hash)}
}

func ecdsaAlgorithm(h crypto.Hash) string {
	switch h {
	case crypto.SHA256:
		return algECDSASHA256
	case crypto.SHA384:
		return algECDSASHA384
	}
	return algECDSASHA512
}

func hmacAlgorithm(h crypto.Hash) string {
	switch h {
	case crypto.SHA224:
		return algHMACSHA224
	case crypto.SHA256:
		return algHMACSHA256
	case crypto.SHA384:
		return algHMACSHA384
	}
	return algHMACSHA512
}
