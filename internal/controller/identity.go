package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// The instance identity key signs every instance's identity document
// (dynamic/instance-identity/document of its metadata service), so that
// code that is handed a document can tell it was made by this host for
// that instance. ECDSA P-256 with SHA-256: its signatures are short
// enough for an HTTP header, and `openssl dgst -sha256 -verify` checks
// them with the public key azoted publishes (docs/guests.md). It is made
// on first start and kept as the audit signing key is: PEM, mode 0400,
// under the state directory; a guest never sees it.

// loadOrMakeIdentityKey reads the identity key at path, making it on
// first start, and returns it with its public key in PEM.
func loadOrMakeIdentityKey(path string) (*ecdsa.PrivateKey, []byte, error) {
	var key *ecdsa.PrivateKey
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, nil, err
		}
		if err := writePrivateKey(path, key); err != nil {
			return nil, nil, err
		}
	case err != nil:
		return nil, nil, err
	default:
		b, _ := pem.Decode(raw)
		if b == nil || b.Type != "EC PRIVATE KEY" {
			return nil, nil, fmt.Errorf("%s: no EC private key", path)
		}
		if key, err = x509.ParseECPrivateKey(b.Bytes); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if key.Curve != elliptic.P256() {
			return nil, nil, fmt.Errorf("%s: not a P-256 key", path)
		}
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
