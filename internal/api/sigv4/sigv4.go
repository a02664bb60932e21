package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm azote accepts.
const Algorithm = "AWS4-HMAC-SHA256"

// TimeFormat is the layout of x-amz-date.
const TimeFormat = "20060102T150405Z"

const (
	dateFormat      = "20060102"
	terminator      = "aws4_request"
	headerDate      = "X-Amz-Date"
	headerToken     = "X-Amz-Security-Token"
	headerAuth      = "Authorization"
	headerContentSH = "X-Amz-Content-Sha256"
)

// UnsignedPayload in x-amz-content-sha256 says the body is not covered by
// the signature; the server accepts it only where the body is verified by
// other means (content-addressed blobs).
const UnsignedPayload = "UNSIGNED-PAYLOAD"

// EmptyPayloadHash is hex(SHA-256("")).
const EmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Credentials sign requests.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// HashPayload returns hex(SHA-256(body)).
func HashPayload(body []byte) string {
	s := sha256.Sum256(body)
	return hex.EncodeToString(s[:])
}

// SigningKey derives the key of a day, region and service.
func SigningKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, terminator)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// Sign adds x-amz-date, the session token if any, and the Authorization
// header to r, signing every header already set except the ones the SDK
// leaves out (User-Agent, Expect, Transfer-Encoding, X-Amzn-Trace-Id).
func Sign(r *http.Request, payloadHash string, c Credentials, region, service string, t time.Time) {
	t = t.UTC()
	r.Header.Set(headerDate, t.Format(TimeFormat))
	if c.SessionToken != "" {
		r.Header.Set(headerToken, c.SessionToken)
	}
	r.Header.Del(headerAuth)
	var names []string
	names = append(names, "host")
	if r.ContentLength > 0 {
		names = append(names, "content-length")
	}
	for k := range r.Header {
		lk := strings.ToLower(k)
		if ignoredHeader(lk) || lk == "content-length" {
			continue
		}
		names = append(names, lk)
	}
	sort.Strings(names)
	date := t.Format(dateFormat)
	scope := date + "/" + region + "/" + service + "/" + terminator
	canon := CanonicalRequest(r, names, payloadHash)
	sts := StringToSign(t.Format(TimeFormat), scope, canon)
	sig := hex.EncodeToString(hmacSHA256(SigningKey(c.SecretAccessKey, date, region, service), sts))
	r.Header.Set(headerAuth, Algorithm+" Credential="+c.AccessKeyID+"/"+scope+", SignedHeaders="+strings.Join(names, ";")+", Signature="+sig)
}

func ignoredHeader(lk string) bool {
	switch lk {
	case "authorization", "user-agent", "x-amzn-trace-id", "expect", "transfer-encoding":
		return true
	}
	return false
}

// StringToSign builds the string the signature is an HMAC of.
func StringToSign(amzDate, scope, canonicalRequest string) string {
	h := sha256.Sum256([]byte(canonicalRequest))
	return Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
}

// CanonicalRequest builds the canonical form of r over the signed header
// names (lower case, sorted), as the SDK does for every service but S3:
// the escaped path is escaped once more.
func CanonicalRequest(r *http.Request, signed []string, payloadHash string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.EscapedPath()
	if r.URL.Opaque != "" {
		path = opaquePath(r.URL.Opaque)
	}
	if path == "" {
		path = "/"
	}
	b.WriteString(uriEncode(path, false))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(headerValue(r, name))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

func opaquePath(o string) string {
	if i := strings.IndexByte(o, '?'); i >= 0 {
		o = o[:i]
	}
	o = strings.TrimPrefix(o, "//")
	if i := strings.IndexByte(o, '/'); i >= 0 {
		return o[i:]
	}
	return ""
}

// headerValue is the canonical value of one signed header: values joined
// by commas, each trimmed and with runs of spaces folded to one.
func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		h := r.Host
		if h == "" {
			h = r.URL.Host
		}
		return foldSpaces(h)
	case "content-length":
		if r.ContentLength >= 0 {
			return strconv.FormatInt(r.ContentLength, 10)
		}
	}
	vals := r.Header.Values(name)
	for i, v := range vals {
		vals[i] = foldSpaces(v)
	}
	return strings.Join(vals, ",")
}

func foldSpaces(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, _ := url.ParseQuery(raw)
	type kv struct{ k, v string }
	var ps []kv
	for k, vs := range q {
		ek := uriEncode(k, true)
		for _, v := range vs {
			ps = append(ps, kv{ek, uriEncode(v, true)})
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].k != ps[j].k {
			return ps[i].k < ps[j].k
		}
		return ps[i].v < ps[j].v
	})
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// uriEncode is AWS's UriEncode: unreserved characters stay, everything
// else becomes %XX; '/' stays too unless encodeSlash.
func uriEncode(s string, encodeSlash bool) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }
