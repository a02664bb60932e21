package sigv4

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Errors of verification. Each maps to one stable API code.
var (
	ErrMissingAuth       = errors.New("sigv4: request is not signed")
	ErrIncomplete        = errors.New("sigv4: incomplete or malformed signature")
	ErrUnknownKey        = errors.New("sigv4: unknown access key")
	ErrInactiveKey       = errors.New("sigv4: access key is inactive")
	ErrExpiredToken      = errors.New("sigv4: session token expired or invalid")
	ErrSignatureMismatch = errors.New("sigv4: signature does not match")
	ErrSkew              = errors.New("sigv4: request time too far from the host clock")
	ErrReplay            = errors.New("sigv4: request was already received")
	ErrReplayCacheFull   = errors.New("sigv4: too many requests by this key inside the replay window")
	// ErrMarkUnwritable refuses a request dated ahead of the host clock
	// that the server could not record in its Mark.
	ErrMarkUnwritable = errors.New("sigv4: cannot record the date of a request dated ahead of the host clock")
)

// MaxAuthorizationLen bounds the Authorization header the parser reads.
const MaxAuthorizationLen = 2048

// Authorization is a parsed Authorization header.
type Authorization struct {
	AccessKeyID   string
	Date          string // yyyymmdd of the credential scope
	Region        string
	Service       string
	SignedHeaders []string // lower case, sorted, no duplicates
	Signature     [32]byte
}

// Scope is the credential scope of a.
func (a Authorization) Scope() string {
	return a.Date + "/" + a.Region + "/" + a.Service + "/" + terminator
}

// ParseAuthorization parses `AWS4-HMAC-SHA256 Credential=AKID/date/region/
// service/aws4_request, SignedHeaders=a;b, Signature=hex`. The three
// parts may come in any order, separated by commas and optional spaces;
// each must appear once.
func ParseAuthorization(h string) (Authorization, error) {
	var a Authorization
	if h == "" {
		return a, ErrMissingAuth
	}
	if len(h) > MaxAuthorizationLen {
		return a, fmt.Errorf("%w: Authorization header over %d bytes", ErrIncomplete, MaxAuthorizationLen)
	}
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != Algorithm {
		return a, fmt.Errorf("%w: algorithm must be %s", ErrIncomplete, Algorithm)
	}
	var cred, signed, sig string
	var seen [3]bool
	for _, part := range strings.Split(rest, ",") {
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return a, fmt.Errorf("%w: malformed component %q", ErrIncomplete, part)
		}
		var i int
		switch k {
		case "Credential":
			i, cred = 0, v
		case "SignedHeaders":
			i, signed = 1, v
		case "Signature":
			i, sig = 2, v
		default:
			return a, fmt.Errorf("%w: unknown component %q", ErrIncomplete, k)
		}
		if seen[i] {
			return a, fmt.Errorf("%w: %s given twice", ErrIncomplete, k)
		}
		seen[i] = true
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return a, fmt.Errorf("%w: Credential, SignedHeaders and Signature are all required", ErrIncomplete)
	}
	fields := strings.Split(cred, "/")
	if len(fields) != 5 || fields[4] != terminator {
		return a, fmt.Errorf("%w: credential must be KEY/date/region/service/%s", ErrIncomplete, terminator)
	}
	for _, f := range fields[:4] {
		if f == "" {
			return a, fmt.Errorf("%w: empty field in credential", ErrIncomplete)
		}
	}
	if _, err := time.Parse(dateFormat, fields[1]); err != nil {
		return a, fmt.Errorf("%w: credential date %q", ErrIncomplete, fields[1])
	}
	a.AccessKeyID, a.Date, a.Region, a.Service = fields[0], fields[1], fields[2], fields[3]
	if len(sig) != 64 {
		return a, fmt.Errorf("%w: signature must be 64 hex digits", ErrIncomplete)
	}
	if _, err := hex.Decode(a.Signature[:], []byte(sig)); err != nil {
		return a, fmt.Errorf("%w: signature is not hex", ErrIncomplete)
	}
	if signed == "" {
		return a, fmt.Errorf("%w: no signed headers", ErrIncomplete)
	}
	a.SignedHeaders = strings.Split(signed, ";")
	for i, name := range a.SignedHeaders {
		if name == "" || name != strings.ToLower(name) || strings.ContainsAny(name, " \t:") {
			return a, fmt.Errorf("%w: bad signed header name %q", ErrIncomplete, name)
		}
		if i > 0 && a.SignedHeaders[i-1] >= name {
			return a, fmt.Errorf("%w: signed headers must be sorted and unique", ErrIncomplete)
		}
	}
	return a, nil
}

// Key is what the verifier needs to know of an access key.
type Key struct {
	Secret string
	Active bool
}

// KeyFunc looks up the secret of an access key; token is the session token
// sent with it (empty for long-term keys). It returns ErrUnknownKey,
// ErrExpiredToken or another error to refuse.
type KeyFunc func(accessKeyID, token string) (Key, error)

// Verifier checks signed requests for one region and the services it
// serves.
type Verifier struct {
	Region  string
	Service string
	// Services, when set, are the signing names accepted instead of
	// Service alone (one endpoint serving several AWS services, each
	// signed with its own name); Verified.Auth.Service says which one a
	// request used, for the caller to limit it to that service's routes.
	Services []string
	// MaxSkew is how far x-amz-date may be from now (default 5 minutes).
	MaxSkew time.Duration
	// MaxReplayEntries bounds the replay cache: signatures plus access
	// keys held (default 1<<20, about 100 MiB).
	MaxReplayEntries int
	// MaxReplayPerKey bounds the signatures held for one access key
	// (default 1<<16). A key over it loses its oldest request seconds
	// and its older requests are refused from then on; it is throttled
	// only when all it holds is as recent as the new request.
	MaxReplayPerKey int
	// NotBefore refuses requests signed before it: the replay cache
	// lives in memory, so a verifier that started at NotBefore cannot
	// know which earlier requests a previous process already accepted.
	// It is compared at full precision against x-amz-date's whole
	// seconds, so a request dated the second of NotBefore is refused
	// unless NotBefore is that second's start; a server that starts
	// accepting requests only once the next second has begun turns
	// none away.
	NotBefore time.Time
	// Mark, if set, is written before a request dated ahead of the host
	// clock is accepted, and requests dated before their key's Previous
	// value are refused like those before NotBefore: together they
	// refuse after a restart every request an earlier process accepted.
	Mark *Mark
	Now  func() time.Time

	keys   keyCache
	replay replayCache
}

// Verified is what a successful verification established.
type Verified struct {
	Auth    Authorization
	Time    time.Time
	Token   string
	Payload string // the payload hash that was signed
}

// Verify checks r. payloadHash is hex(SHA-256(body)) as the server
// computed it (or UnsignedPayload where the caller allows that and the
// client sent it).
func (v *Verifier) Verify(r *http.Request, payloadHash string, keys KeyFunc) (*Verified, error) {
	a, err := ParseAuthorization(r.Header.Get(headerAuth))
	if err != nil {
		return nil, err
	}
	if len(r.Header.Values(headerAuth)) > 1 {
		return nil, fmt.Errorf("%w: more than one Authorization header", ErrIncomplete)
	}
	if !contains(a.SignedHeaders, "host") || !contains(a.SignedHeaders, "x-amz-date") {
		return nil, fmt.Errorf("%w: host and x-amz-date must be signed", ErrIncomplete)
	}
	token := r.Header.Get(headerToken)
	if token != "" && !contains(a.SignedHeaders, "x-amz-security-token") {
		return nil, fmt.Errorf("%w: x-amz-security-token must be signed", ErrIncomplete)
	}
	if a.Region != v.Region || !v.serves(a.Service) {
		return nil, fmt.Errorf("%w: credential scope %s/%s, this endpoint is %s/%s", ErrIncomplete, a.Region, a.Service, v.Region, v.services())
	}
	amzDate := r.Header.Get(headerDate)
	t, err := time.Parse(TimeFormat, amzDate)
	if err != nil {
		return nil, fmt.Errorf("%w: x-amz-date %q is not %s", ErrIncomplete, amzDate, TimeFormat)
	}
	if t.Format(dateFormat) != a.Date {
		return nil, fmt.Errorf("%w: credential date %s differs from x-amz-date", ErrIncomplete, a.Date)
	}
	now := v.now()
	skew := v.skew()
	if d := now.Sub(t); d > skew || d < -skew {
		return nil, fmt.Errorf("%w: x-amz-date %s, host time %s", ErrSkew, amzDate, now.UTC().Format(TimeFormat))
	}
	// x-amz-date has whole seconds: a request dated the second the
	// verifier started may have been signed, and accepted by the previous
	// process, before the start, so that whole second is refused.
	if t.Before(v.NotBefore) {
		return nil, fmt.Errorf("%w: signed at %s, before this server started (%s); sign it again", ErrSkew, amzDate, v.NotBefore.UTC().Format(TimeFormat))
	}
	if h := r.Header.Get(headerContentSH); h != "" && h != payloadHash {
		return nil, fmt.Errorf("%w: x-amz-content-sha256 does not match the body", ErrSignatureMismatch)
	}
	k, err := keys(a.AccessKeyID, token)
	if err != nil {
		return nil, err
	}
	if !k.Active {
		return nil, ErrInactiveKey
	}
	canon := CanonicalRequest(r, a.SignedHeaders, payloadHash)
	sts := StringToSign(amzDate, a.Scope(), canon)
	want := hmacSHA256(v.keys.get(a.AccessKeyID, k.Secret, a.Date, a.Region, a.Service), sts)
	if !hmac.Equal(want, a.Signature[:]) {
		return nil, ErrSignatureMismatch
	}
	// After the signature: only the key's holder learns of its mark.
	if m := v.markOf(a.AccessKeyID); t.Before(m) {
		return nil, fmt.Errorf("%w: signed at %s, before %s, up to which a previous run of this server accepted requests of this key dated ahead of its clock; sign it again after that time",
			ErrSkew, amzDate, m.UTC().Format(TimeFormat))
	}
	// A request dated ahead of the clock would still be inside the
	// window after a restart, past NotBefore: the mark must cover it
	// before it is accepted.
	if v.Mark != nil && t.After(now) {
		if err := v.Mark.cover(a.AccessKeyID, t, now); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMarkUnwritable, err)
		}
	}
	lim := replayLimits{
		skew:   int64((skew + time.Second - 1) / time.Second),
		max:    positiveOr(v.MaxReplayEntries, defaultMaxReplayEntries),
		perKey: positiveOr(v.MaxReplayPerKey, defaultMaxReplayPerKey),
	}
	if err := v.replay.remember(a.AccessKeyID, a.Signature, t.Unix(), now.Unix(), lim); err != nil {
		return nil, err
	}
	return &Verified{Auth: a, Time: t, Token: token, Payload: payloadHash}, nil
}

func (v *Verifier) serves(service string) bool {
	if len(v.Services) > 0 {
		return contains(v.Services, service)
	}
	return service == v.Service
}

func (v *Verifier) services() string {
	if len(v.Services) > 0 {
		return strings.Join(v.Services, "|")
	}
	return v.Service
}

func (v *Verifier) markOf(key string) time.Time {
	if v.Mark == nil {
		return time.Time{}
	}
	return v.Mark.Previous(key)
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) skew() time.Duration {
	if v.MaxSkew > 0 {
		return v.MaxSkew
	}
	return 5 * time.Minute
}

func positiveOr(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// keyCache keeps derived signing keys so a busy client costs one HMAC per
// request instead of five.
type keyCache struct {
	mu sync.Mutex
	m  map[string]cachedKey
}

type cachedKey struct {
	secretHash [32]byte
	key        []byte
}

func (c *keyCache) get(akid, secret, date, region, service string) []byte {
	id := akid + "/" + date + "/" + region + "/" + service
	sh := sha256Sum(secret)
	c.mu.Lock()
	if k, ok := c.m[id]; ok && k.secretHash == sh {
		c.mu.Unlock()
		return k.key
	}
	c.mu.Unlock()
	key := SigningKey(secret, date, region, service)
	c.mu.Lock()
	if c.m == nil || len(c.m) > 4096 {
		c.m = make(map[string]cachedKey)
	}
	c.m[id] = cachedKey{secretHash: sh, key: key}
	c.mu.Unlock()
	return key
}
