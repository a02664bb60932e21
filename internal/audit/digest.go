package audit

import (
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

const (
	hashAlgorithm      = "SHA-256"
	signatureAlgorithm = "SHA256withRSA"
	minRSABits         = 2048

	// Decompression caps: a digest lists at most a few thousand files, a
	// log holds at most MaxFileBytes of records. Anything larger is hostile.
	maxDigestJSON = 64 << 20
	maxLogJSON    = 1 << 30
)

// digestFile mirrors CloudTrail's digest file. Pointers are the fields
// CloudTrail writes as null: the previous-digest fields of the first
// digest, and the event times of a digest that lists no events.
type digestFile struct {
	AWSAccountID               string     `json:"awsAccountId"`
	DigestStartTime            string     `json:"digestStartTime"`
	DigestEndTime              string     `json:"digestEndTime"`
	DigestS3Bucket             string     `json:"digestS3Bucket"`
	DigestS3Object             string     `json:"digestS3Object"`
	DigestPublicKeyFingerprint string     `json:"digestPublicKeyFingerprint"`
	DigestSignatureAlgorithm   string     `json:"digestSignatureAlgorithm"`
	NewestEventTime            *string    `json:"newestEventTime"`
	OldestEventTime            *string    `json:"oldestEventTime"`
	PreviousDigestS3Bucket     *string    `json:"previousDigestS3Bucket"`
	PreviousDigestS3Object     *string    `json:"previousDigestS3Object"`
	PreviousDigestHashValue    *string    `json:"previousDigestHashValue"`
	PreviousDigestHashAlg      *string    `json:"previousDigestHashAlgorithm"`
	PreviousDigestSignature    *string    `json:"previousDigestSignature"`
	LogFiles                   []logEntry `json:"logFiles"`
}

// logEntry is one element of a digest's logFiles.
type logEntry struct {
	S3Bucket        string `json:"s3Bucket"`
	S3Object        string `json:"s3Object"`
	HashValue       string `json:"hashValue"`
	HashAlgorithm   string `json:"hashAlgorithm"`
	NewestEventTime string `json:"newestEventTime"`
	OldestEventTime string `json:"oldestEventTime"`
}

// parsed digest times, filled by parseDigest.
type digest struct {
	digestFile
	start, end time.Time
}

// fingerprint is CloudTrail's public key fingerprint: hex MD5 of the
// PKCS#1 DER encoding of the key. MD5 only names the key here; what makes a
// digest authentic is the RSA signature checked with a key the validator
// already trusts.
func fingerprint(pub *rsa.PublicKey) string {
	sum := md5.Sum(x509.MarshalPKCS1PublicKey(pub))
	return hex.EncodeToString(sum[:])
}

func publicKeyPEM(pub *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM reads an RSA public key in PKIX ("PUBLIC KEY") or
// PKCS#1 ("RSA PUBLIC KEY") PEM and returns it with its fingerprint.
func ParsePublicKeyPEM(b []byte) (*rsa.PublicKey, string, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, "", fmt.Errorf("%w: no PEM block", ErrBadKey)
	}
	var pub *rsa.PublicKey
	switch blk.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		var ok bool
		if pub, ok = k.(*rsa.PublicKey); !ok {
			return nil, "", fmt.Errorf("%w: not an RSA key", ErrBadKey)
		}
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		pub = k
	default:
		return nil, "", fmt.Errorf("%w: PEM type %q", ErrBadKey, blk.Type)
	}
	if pub.N.BitLen() < minRSABits {
		return nil, "", fmt.Errorf("%w: %d-bit RSA key", ErrBadKey, pub.N.BitLen())
	}
	return pub, fingerprint(pub), nil
}

// stringToSign is CloudTrail's data signing string for a digest:
// digestEndTime, bucket/object, hex SHA-256 of the digest file as stored,
// and the previous digest's hex signature or "null" for the first.
func stringToSign(end, object string, digestBytes []byte, prevSig *string) []byte {
	sum := sha256.Sum256(digestBytes)
	prev := "null"
	if prevSig != nil {
		prev = *prevSig
	}
	return []byte(end + "\n" + bucket + "/" + object + "\n" + hex.EncodeToString(sum[:]) + "\n" + prev)
}

func signDigest(s crypto.Signer, end, object string, digestBytes []byte, prevSig *string) (string, error) {
	h := sha256.Sum256(stringToSign(end, object, digestBytes, prevSig))
	sig, err := s.Sign(nil, h[:], crypto.SHA256)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sig), nil
}

func verifyDigest(pub *rsa.PublicKey, end, object string, digestBytes []byte, prevSig *string, sigHex string) error {
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return fmt.Errorf("signature is not hex: %v", err)
	}
	h := sha256.Sum256(stringToSign(end, object, digestBytes, prevSig))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig)
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// gzipPool keeps compressors: each holds about a megabyte of tables.
var gzipPool = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level cannot fail
	return zw
}}

// gzipBytes compresses b as one gzip member with an empty header, so the
// same bytes always give the same file.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	zw := gzipPool.Get().(*gzip.Writer)
	defer gzipPool.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gunzip decompresses a single gzip member of at most limit bytes.
func gunzip(b []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	zr.Multistream(false)
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes uncompressed", ErrCorrupt, limit)
	}
	return out, nil
}

// parseDigestJSON decodes and checks a digest's JSON. It is strict (no
// unknown fields, no trailing data, every path inside the layout, every
// hash 64 hex digits) because its input may come from a hostile copy.
func parseDigestJSON(b []byte) (*digest, error) {
	var d digest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d.digestFile); err != nil {
		return nil, fmt.Errorf("%w: digest: %v", ErrCorrupt, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after digest", ErrCorrupt)
	}
	bad := func(why string, a ...any) (*digest, error) {
		return nil, fmt.Errorf("%w: digest: %s", ErrCorrupt, fmt.Sprintf(why, a...))
	}
	var err error
	if d.start, err = time.Parse(timeLayout, d.DigestStartTime); err != nil {
		return bad("digestStartTime %q", d.DigestStartTime)
	}
	if d.end, err = time.Parse(timeLayout, d.DigestEndTime); err != nil {
		return bad("digestEndTime %q", d.DigestEndTime)
	}
	if d.end.Before(d.start) {
		return bad("ends before it starts")
	}
	if d.DigestS3Bucket != bucket || classify(d.DigestS3Object) != kindDigest {
		return bad("digest location %q/%q", d.DigestS3Bucket, d.DigestS3Object)
	}
	if !isHex(d.DigestPublicKeyFingerprint, 32) {
		return bad("fingerprint %q", d.DigestPublicKeyFingerprint)
	}
	if d.DigestSignatureAlgorithm != signatureAlgorithm {
		return bad("signature algorithm %q", d.DigestSignatureAlgorithm)
	}
	if (d.NewestEventTime == nil) != (d.OldestEventTime == nil) {
		return bad("only one of newestEventTime and oldestEventTime")
	}
	if d.NewestEventTime != nil {
		if !isTime(*d.NewestEventTime) || !isTime(*d.OldestEventTime) {
			return bad("event times")
		}
	}
	prev := []*string{d.PreviousDigestS3Bucket, d.PreviousDigestS3Object, d.PreviousDigestHashValue,
		d.PreviousDigestHashAlg, d.PreviousDigestSignature}
	nulls := 0
	for _, p := range prev {
		if p == nil {
			nulls++
		}
	}
	switch nulls {
	case len(prev):
	case 0:
		if *d.PreviousDigestS3Bucket != bucket || classify(*d.PreviousDigestS3Object) != kindDigest {
			return bad("previous digest location")
		}
		if !isHex(*d.PreviousDigestHashValue, 64) || *d.PreviousDigestHashAlg != hashAlgorithm {
			return bad("previous digest hash")
		}
		if !isHex(*d.PreviousDigestSignature, -1) {
			return bad("previous digest signature")
		}
	default:
		return bad("previous digest fields partly null")
	}
	if d.LogFiles == nil {
		return bad("logFiles missing")
	}
	for _, e := range d.LogFiles {
		if e.S3Bucket != bucket || classify(e.S3Object) != kindLog {
			return bad("log file location %q/%q", e.S3Bucket, e.S3Object)
		}
		if !isHex(e.HashValue, 64) || e.HashAlgorithm != hashAlgorithm {
			return bad("log file hash for %s", e.S3Object)
		}
		if !isTime(e.NewestEventTime) || !isTime(e.OldestEventTime) {
			return bad("log file event times for %s", e.S3Object)
		}
	}
	return &d, nil
}

// parseDigestFile decodes a digest file as stored (gzip of JSON).
func parseDigestFile(b []byte) (*digest, error) {
	j, err := gunzip(b, maxDigestJSON)
	if err != nil {
		return nil, err
	}
	return parseDigestJSON(j)
}

func isTime(s string) bool {
	_, err := time.Parse(timeLayout, s)
	return err == nil
}

// isHex reports whether s is lower-case hex of n characters, or of any
// non-zero even length when n < 0.
func isHex(s string, n int) bool {
	if n >= 0 && len(s) != n || len(s) == 0 || len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func strp(s string) *string { return &s }

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }
