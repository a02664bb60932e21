// Package keys is the one seam through which azoted protects secrets at
// rest: wrap and unwrap under a named key. Only wrapped secrets are ever
// stored (volume data keys, IAM secret keys and MFA seeds, the STS token
// key). Until the KMS lands, the host key (Host) stands behind every
// name; the KMS will implement the same interface with a key of its own
// per name (GenerateDataKey, Decrypt). Hosts that share VPCs wrap their
// traffic keys (Network) under a fleet key instead (Fleet), which each of
// them holds: the host key never leaves its host.
//
// The host key is the host's root key, kept at rest in one of three forms
// (OpenRoot, Source): sealed by the machine's TPM 2.0 (host.key.tpm),
// wrapped under a passphrase with argon2id (host.key.argon2), or the raw
// bytes in a root-only file (host.key). Opened, it is the same 32 bytes
// whatever the form, so MigrateRoot moves it between forms without
// touching anything wrapped under it. It is never written in the clear
// except in the file form the operator chose.
//
// The context given to Wrap is authenticated, so a wrapped secret cannot
// be moved to another owner. The package never stores a plaintext key and
// never logs one.
package keys

import "errors"

// Name names a wrapping key.
type Name string

// The wrapping keys azoted uses.
const (
	// Volumes wraps the data keys of encrypted volumes; the context is
	// the volume id.
	Volumes Name = "azote/volumes"
	// IAM wraps IAM's secrets (secret access keys, MFA seeds, the STS
	// token key); the context names the secret.
	IAM Name = "azote/iam"
	// Network wraps the traffic keys of VPCs; the context is the VPC id
	// and the key's epoch.
	Network Name = "azote/network"
	// KMS wraps the key material of KMS keys; the context names the key
	// and the material's version.
	KMS Name = "azote/kms"
)

// ErrUnknownKey is returned for a name the wrapper holds no key for.
var ErrUnknownKey = errors.New("keys: no such wrapping key")

// ErrUnwrap is returned for wrapped data that does not authenticate under
// the key and context.
var ErrUnwrap = errors.New("keys: wrapped data does not authenticate")

// Wrapper wraps and unwraps under named keys.
type Wrapper interface {
	Wrap(key Name, plaintext, context []byte) ([]byte, error)
	Unwrap(key Name, wrapped, context []byte) ([]byte, error)
	// UnwrapTo writes the plaintext into dst[:0] when it has the room (a
	// locked key buffer), so that the secret is never copied elsewhere.
	UnwrapTo(key Name, dst, wrapped, context []byte) ([]byte, error)
}
