package api

import "time"

// KeyPairIDPrefix starts the id of a key pair, as EC2 spells it.
const KeyPairIDPrefix = "key-"

// Key pair types, as EC2's KeyType.
const (
	KeyTypeED25519 = "ed25519"
	KeyTypeRSA     = "rsa"
)

// MinRSABits is the smallest RSA modulus a key pair may have.
const MinRSABits = 2048

// ImportKeyPairRequest is the body of POST /v1/key-pairs/import.
type ImportKeyPairRequest struct {
	KeyName string `json:"key_name"`
	// PublicKeyMaterial is one OpenSSH public key ("ssh-ed25519 AAAA…
	// comment"), as in authorized_keys.
	PublicKeyMaterial string            `json:"public_key_material"`
	Tags              map[string]string `json:"tags,omitempty"`
}

// CreateKeyPairRequest is the body of POST /v1/key-pairs.
type CreateKeyPairRequest struct {
	KeyName string `json:"key_name"`
	// KeyType is ed25519 (the default) or rsa (2048 bits).
	KeyType string            `json:"key_type,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
}

// KeyPair is the public view of a key pair. The private key of a created
// pair is never part of it: it is in CreateKeyPairResponse, once.
type KeyPair struct {
	ID      string `json:"key_pair_id"`
	KeyName string `json:"key_name"`
	KeyType string `json:"key_type"`
	// KeyFingerprint is as EC2 prints it: for an imported RSA key the
	// MD5 of its DER public key, for a created one the SHA-1 of its
	// PKCS#8 DER private key (both colon hex); for ED25519 the base64
	// SHA-256 of the key, as OpenSSH shows it.
	KeyFingerprint string `json:"key_fingerprint"`
	// PublicKey is the OpenSSH public key ("ssh-ed25519 AAAA…").
	PublicKey string `json:"public_key"`
	// Created tells a pair made by azoted from an imported one.
	Created   bool              `json:"created"`
	Tags      map[string]string `json:"tags,omitempty"`
	CreatedAt time.Time         `json:"create_time"`
}

// CreateKeyPairResponse is the answer of POST /v1/key-pairs: the pair
// and its private key (OpenSSH PEM), which azoted does not keep.
type CreateKeyPairResponse struct {
	KeyPair
	KeyMaterial string `json:"key_material"`
}

// UserDataResponse is the answer of GET /v1/instances/{ref}/user-data.
type UserDataResponse struct {
	InstanceID string `json:"instance_id"`
	UserData   []byte `json:"user_data"`
	SHA256     string `json:"sha256,omitempty"`
}
