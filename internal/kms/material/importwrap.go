package material

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// WrappingKey makes the RSA key pair GetParametersForImport hands out:
// spec is its WrappingKeySpec, RSA_2048, RSA_3072 or RSA_4096 (not SM2).
// The private half stays with the import token; the public half is what
// the client encrypts its material to.
func WrappingKey(spec string) (privatePKCS8, publicSPKI []byte, err error) {
	s := Spec(spec)
	if specs[s].family != rsaKey {
		return nil, nil, fmt.Errorf("%w: wrapping key spec %q", ErrUnsupported, spec)
	}
	return DataKeyPair(spec)
}

// aesKeyWrapKeyLen is the AES key AWS's RSA_AES_KEY_WRAP_* formats carry:
// AES-256, as its instructions generate (`openssl rand 32`).
const aesKeyWrapKeyLen = 32

// UnwrapImport recovers key material that a client encrypted to the
// public half of a WrappingKey, with one of AWS's wrapping algorithms:
//
//   - RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256: RSA-OAEP (MGF1 with the same
//     hash, empty label) of the material itself;
//   - RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256: RSA-OAEP of a
//     32-byte AES key, as long as the modulus, then that key's AES Key
//     Wrap with Padding (RFC 5649) of the material. This is what AWS's
//     openssl recipe makes (`openssl pkeyutl -encrypt ... oaep` of the
//     AES key, then `openssl enc -id-aes256-wrap-pad -iv A65959A6` of the
//     material, concatenated) and the only way to bring an RSA or ECC
//     private key, which is too long for RSA-OAEP alone.
//
// Encrypted bytes that do not decrypt wrap ErrInvalidCiphertext, with no
// detail of what failed. It does not check that the material suits the
// key; the caller runs Validate on what it returns.
func UnwrapImport(wrappingPrivate []byte, alg string, encrypted []byte) ([]byte, error) {
	var h crypto.Hash
	wrapped := false
	switch alg {
	case algOAEPSHA1:
		h = crypto.SHA1
	case algOAEPSHA256:
		h = crypto.SHA256
	case algKeyWrapSHA1:
		h, wrapped = crypto.SHA1, true
	case algKeyWrapSHA256:
		h, wrapped = crypto.SHA256, true
	default:
		return nil, fmt.Errorf("%w: wrapping algorithm %q", ErrUnsupported, alg)
	}
	// The wrapping key is the service's own, never the client's: a bad
	// one is an internal fault, not the client's invalid ciphertext.
	parsed, err := x509.ParsePKCS8PrivateKey(wrappingPrivate)
	if err != nil {
		return nil, fmt.Errorf("material: wrapping key: %v", err)
	}
	k, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("material: wrapping key is a %T, not RSA", parsed)
	}

	if !wrapped {
		m, err := rsa.DecryptOAEP(h.New(), nil, k, encrypted, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: encrypted key material does not decrypt", ErrInvalidCiphertext)
		}
		return m, nil
	}
	if len(encrypted) <= k.Size() {
		return nil, fmt.Errorf("%w: encrypted key material too short for %s", ErrInvalidCiphertext, alg)
	}
	aesKey, err := rsa.DecryptOAEP(h.New(), nil, k, encrypted[:k.Size()], nil)
	if err != nil || len(aesKey) != aesKeyWrapKeyLen {
		clear(aesKey)
		return nil, fmt.Errorf("%w: encrypted AES key does not decrypt to %d bytes", ErrInvalidCiphertext, aesKeyWrapKeyLen)
	}
	defer clear(aesKey)
	m, err := unwrapPad(aesKey, encrypted[k.Size():])
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key material does not unwrap", ErrInvalidCiphertext)
	}
	return m, nil
}
