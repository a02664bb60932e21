// Package sigv4 signs and verifies AWS Signature Version 4 requests
// (header form, `AWS4-HMAC-SHA256`), byte-compatible with the
// aws-sdk-go-v2 signer so the SDKs and the azote CLI are interchangeable
// clients.
//
// The verifier refuses a request whose signature does not match, whose
// key is unknown, whose x-amz-date is more than MaxSkew away from the
// host clock, whose host or x-amz-date header is not signed, or whose
// signature was already accepted inside the skew window (a replay). It
// never looks up a secret before the Authorization header has parsed, and
// it records a signature as seen only after it verified, so forged
// requests cannot fill the replay cache. The cache is bounded per access
// key and in total without forgetting a signature that could still be
// replayed: what it must drop raises a floor under which that key's
// requests are refused, so one key's flood costs only that key.
package sigv4
