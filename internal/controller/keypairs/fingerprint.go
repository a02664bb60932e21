package keypairs

import (
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// EC2 prints a key pair's fingerprint in one of three ways, and users
// check them with the commands of its "Verify the fingerprint of your key
// pair" guide, so each is reproduced exactly:
//
//	imported RSA  MD5 of the DER (SubjectPublicKeyInfo) public key, colon hex
//	              openssl rsa -pubin … -outform DER | openssl md5 -c
//	created RSA   SHA-1 of the PKCS#8 DER private key, colon hex
//	              openssl pkcs8 -in key.pem -outform DER -topk8 -nocrypt | openssl sha1 -c
//	ED25519       base64 SHA-256 of the SSH wire key, as OpenSSH shows it
//	              (ssh-keygen -l -E sha256, without "SHA256:"), padded as
//	              EC2 prints it
//
// The imported RSA fingerprint is not what ssh-keygen -E md5 prints (that
// is the MD5 of the SSH wire key): EC2's differs, and so does azote's.

// colonHex renders a digest as EC2 does: lower-case hex bytes joined by
// colons.
func colonHex(sum []byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, ":")
}

// ed25519Fingerprint is the SHA-256 fingerprint of an SSH public key.
func ed25519Fingerprint(pub ssh.PublicKey) string {
	sum := sha256.Sum256(pub.Marshal())
	return base64.StdEncoding.EncodeToString(sum[:])
}

// importedRSAFingerprint is the MD5 of the key's DER encoding.
func importedRSAFingerprint(pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := md5.Sum(der)
	return colonHex(sum[:]), nil
}

// createdRSAFingerprint is the SHA-1 of the private key's PKCS#8 DER
// encoding.
func createdRSAFingerprint(priv *rsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	sum := sha1.Sum(der)
	return colonHex(sum[:]), nil
}

// publicOf is the SSH form of a created private key.
func publicOf(priv any) (ssh.PublicKey, error) {
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		return ssh.NewPublicKey(k.Public())
	case *rsa.PrivateKey:
		return ssh.NewPublicKey(&k.PublicKey)
	}
	return nil, fmt.Errorf("key pairs: unsupported private key %T", priv)
}
