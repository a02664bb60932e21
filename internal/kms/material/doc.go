// Package material makes, checks and uses KMS key material with AWS KMS's
// semantics: the key specs and usages, which algorithms each key allows,
// asymmetric encryption (RSA-OAEP), signatures (RSASSA-PSS, RSASSA-PKCS1
// v1.5, ECDSA), HMAC, data key pairs, and the wrapping that
// ImportKeyMaterial undoes (RSA-OAEP, alone or around an AES key that
// wraps the material with RFC 5649's AES Key Wrap with Padding).
//
// Material is bytes: 32 random bytes for SYMMETRIC_DEFAULT, the key for
// HMAC, a PKCS #8 DER private key for RSA and ECC. Every function is given
// the material for one call and keeps nothing, so the caller decides where
// it lives and when it is wiped.
//
// The package never stores, logs or chooses a key, and never checks who
// may use one: it does not know a key's state or its policy. It does not
// know a key's usage either, so the caller asks EncryptionAlgorithms,
// SigningAlgorithms or MacAlgorithms with the key's usage before calling
// an operation with an algorithm from the request. What it does check
// is everything else about its input: that the algorithm fits the key
// spec (ErrInvalidAlgorithm), that a message or plaintext is within AWS's
// limits (ErrTooLarge, ErrInvalidMessage), and that material from a client
// has the shape its spec needs (ErrInvalidMaterial).
//
// The symmetric CiphertextBlob is package blob, not this one.
package material
