package material

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// Message types, as Sign and Verify name them.
const (
	messageRaw    = "RAW"
	messageDigest = "DIGEST"
)

type scheme int

const (
	pss scheme = iota + 1
	pkcs1v15
	ecdsaASN1
)

type signingAlg struct {
	family family
	scheme scheme
	hash   crypto.Hash
}

var signingAlgs = map[string]signingAlg{
	algPSSSHA256:   {rsaKey, pss, crypto.SHA256},
	algPSSSHA384:   {rsaKey, pss, crypto.SHA384},
	algPSSSHA512:   {rsaKey, pss, crypto.SHA512},
	algPKCS1SHA256: {rsaKey, pkcs1v15, crypto.SHA256},
	algPKCS1SHA384: {rsaKey, pkcs1v15, crypto.SHA384},
	algPKCS1SHA512: {rsaKey, pkcs1v15, crypto.SHA512},
	algECDSASHA256: {eccKey, ecdsaASN1, crypto.SHA256},
	algECDSASHA384: {eccKey, ecdsaASN1, crypto.SHA384},
	algECDSASHA512: {eccKey, ecdsaASN1, crypto.SHA512},
}

// oaepHash is the hash of an RSA-OAEP algorithm; it is also the MGF1
// hash, and the label is empty, as in AWS.
func oaepHash(alg string) (crypto.Hash, bool) {
	switch alg {
	case algOAEPSHA1:
		return crypto.SHA1, true
	case algOAEPSHA256:
		return crypto.SHA256, true
	}
	return 0, false
}

// PublicKey is the DER SubjectPublicKeyInfo of an RSA or ECC key, as
// GetPublicKey returns it. Symmetric and HMAC keys have none
// (ErrUnsupported).
func PublicKey(s Spec, material []byte) ([]byte, error) {
	info, err := lookup(s)
	if err != nil {
		return nil, err
	}
	if info.family != rsaKey && info.family != eccKey {
		return nil, fmt.Errorf("%w: a %s key has no public key", ErrUnsupported, s)
	}
	k, err := parsePrivate(s, info, material)
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKIXPublicKey(k.Public())
}

// rsaOAEP checks that alg is an RSA-OAEP algorithm a key of spec s allows
// and parses the key.
func rsaOAEP(s Spec, material []byte, alg string) (*rsa.PrivateKey, crypto.Hash, error) {
	info, err := lookup(s)
	if err != nil {
		return nil, 0, err
	}
	h, ok := oaepHash(alg)
	if info.family != rsaKey || !ok {
		return nil, 0, fmt.Errorf("%w: %s with a %s key", ErrInvalidAlgorithm, alg, s)
	}
	k, err := parsePrivate(s, info, material)
	if err != nil {
		return nil, 0, err
	}
	return k.(*rsa.PrivateKey), h, nil
}

// AsymEncrypt encrypts plaintext with RSA-OAEP (alg RSAES_OAEP_SHA_1 or
// RSAES_OAEP_SHA_256; MGF1 with the same hash; empty label). A plaintext
// longer than OAEP can carry in the key's modulus, which is AWS's limit
// too (RSA_2048: 214 bytes with SHA-1, 190 with SHA-256; RSA_3072: 342 and
// 318; RSA_4096: 470 and 446), wraps ErrTooLarge.
func AsymEncrypt(s Spec, material []byte, alg string, plaintext []byte) ([]byte, error) {
	k, h, err := rsaOAEP(s, material, alg)
	if err != nil {
		return nil, err
	}
	if limit := oaepMax(k.Size(), h); len(plaintext) > limit {
		return nil, fmt.Errorf("%w: %d bytes of plaintext, %s with %s takes at most %d", ErrTooLarge, len(plaintext), alg, s, limit)
	}
	return rsa.EncryptOAEP(h.New(), rand.Reader, &k.PublicKey, plaintext, nil)
}

// oaepMax is RFC 8017's limit on an OAEP message: k - 2 hLen - 2.
func oaepMax(k int, h crypto.Hash) int { return k - 2*h.Size() - 2 }

// AsymDecrypt decrypts what AsymEncrypt, or anyone with the public key,
// encrypted with alg. A ciphertext that does not decrypt wraps
// ErrInvalidCiphertext, with no detail: which OAEP check failed must not
// reach the caller (Manger's attack).
func AsymDecrypt(s Spec, material []byte, alg string, ciphertext []byte) ([]byte, error) {
	k, h, err := rsaOAEP(s, material, alg)
	if err != nil {
		return nil, err
	}
	pt, err := rsa.DecryptOAEP(h.New(), nil, k, ciphertext, nil)
	if err != nil {
		return nil, ErrInvalidCiphertext
	}
	return pt, nil
}

// signer checks alg against spec s, reduces the message to the digest it
// signs, and parses the key.
func signer(s Spec, material []byte, alg, messageType string, message []byte) (crypto.Signer, signingAlg, []byte, error) {
	info, err := lookup(s)
	if err != nil {
		return nil, signingAlg{}, nil, err
	}
	sa, ok := signingAlgs[alg]
	if !ok || sa.family != info.family || info.family == eccKey && sa.hash != info.hash {
		return nil, signingAlg{}, nil, fmt.Errorf("%w: %s with a %s key", ErrInvalidAlgorithm, alg, s)
	}
	digest, err := digestOf(sa.hash, alg, messageType, message)
	if err != nil {
		return nil, signingAlg{}, nil, err
	}
	k, err := parsePrivate(s, info, material)
	if err != nil {
		return nil, signingAlg{}, nil, err
	}
	return k, sa, digest, nil
}

// digestOf is what is signed: the hash of a RAW message of at most 4096
// bytes, or a DIGEST message as it is, which must be exactly the hash's
// length (AWS does not truncate or pad a digest, and neither does this).
func digestOf(h crypto.Hash, alg, messageType string, message []byte) ([]byte, error) {
	switch messageType {
	case messageRaw:
		if len(message) > maxMessage {
			return nil, fmt.Errorf("%w: a %d-byte message, at most %d", ErrTooLarge, len(message), maxMessage)
		}
		d := h.New()
		d.Write(message)
		return d.Sum(nil), nil
	case messageDigest:
		if len(message) != h.Size() {
			return nil, fmt.Errorf("%w: a %d-byte digest for %s, which needs %d", ErrInvalidMessage, len(message), alg, h.Size())
		}
		return message, nil
	}
	return nil, fmt.Errorf("%w: message type %q", ErrUnsupported, messageType)
}

// pssOptions fixes the salt length to the digest length, as AWS signs
// and as it verifies.
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}

// Sign signs message with alg: RSASSA_PSS_SHA_* (salt as long as the
// digest, MGF1 with the same hash), RSASSA_PKCS1_V1_5_SHA_* or the one
// ECDSA_SHA_* of the key's curve, giving a DER ECDSA-Sig-Value as AWS
// does. messageType RAW hashes a message of at most 4096 bytes here;
// DIGEST signs a digest the caller made, which must have the algorithm's
// digest length.
func Sign(s Spec, material []byte, alg, messageType string, message []byte) ([]byte, error) {
	k, sa, digest, err := signer(s, material, alg, messageType, message)
	if err != nil {
		return nil, err
	}
	switch sa.scheme {
	case pss:
		return rsa.SignPSS(rand.Reader, k.(*rsa.PrivateKey), sa.hash, digest, pssOptions)
	case pkcs1v15:
		return rsa.SignPKCS1v15(nil, k.(*rsa.PrivateKey), sa.hash, digest)
	default:
		return ecdsa.SignASN1(rand.Reader, k.(*ecdsa.PrivateKey), digest)
	}
}

// Verify checks signature over message as Sign would have made it. A
// signature that does not verify is false with a nil error; the error is
// for a request that is wrong whatever the signature (algorithm, message
// type or length, material).
func Verify(s Spec, material []byte, alg, messageType string, message, signature []byte) (bool, error) {
	k, sa, digest, err := signer(s, material, alg, messageType, message)
	if err != nil {
		return false, err
	}
	switch sa.scheme {
	case pss:
		return rsa.VerifyPSS(&k.(*rsa.PrivateKey).PublicKey, sa.hash, digest, signature, pssOptions) == nil, nil
	case pkcs1v15:
		return rsa.VerifyPKCS1v15(&k.(*rsa.PrivateKey).PublicKey, sa.hash, digest, signature) == nil, nil
	default:
		return ecdsa.VerifyASN1(&k.(*ecdsa.PrivateKey).PublicKey, digest, signature), nil
	}
}

// DataKeyPair makes a key pair for GenerateDataKeyPair: spec is its
// KeyPairSpec (RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384
// or ECC_NIST_P521; not ECC_SECG_P256K1 or SM2), and the pair comes back
// as a PKCS #8 DER private key and a DER SubjectPublicKeyInfo.
func DataKeyPair(spec string) (privatePKCS8, publicSPKI []byte, err error) {
	s := Spec(spec)
	info, err := lookup(s)
	if err != nil {
		return nil, nil, err
	}
	if info.family != rsaKey && info.family != eccKey {
		return nil, nil, fmt.Errorf("%w: key pair spec %q", ErrUnsupported, spec)
	}
	priv, err := Generate(s)
	if err != nil {
		return nil, nil, err
	}
	pub, err := PublicKey(s, priv)
	if err != nil {
		return nil, nil, err
	}
	return priv, pub, nil
}
