package sigv4

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

// signedAt is a distinct signed request of creds dated at.
func signedAt(t *testing.T, creds Credentials, at time.Time, n int) *http.Request {
	t.Helper()
	r := newReq(t, "GET", "https://h/v1/instances", nil)
	r.Header.Set("Amz-Sdk-Invocation-Id", fmt.Sprintf("req-%d", n))
	Sign(r, EmptyPayloadHash, creds, "local", "azote", at)
	return serverView(t, r)
}

// TestReplayCacheOneKeyCannotFillIt: a key that sends more than its quota
// inside the window loses its oldest entries (and its old requests are
// refused), while another key's requests, and the refusal of its
// replays, are untouched. Before per-key quotas the flood filled the one
// global cache and every other key was throttled.
func TestReplayCacheOneKeyCannotFillIt(t *testing.T) {
	start := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	clock := start
	flood := Credentials{AccessKeyID: "AKIAAZOTEFLOOD000001", SecretAccessKey: "s1"}
	quiet := Credentials{AccessKeyID: "AKIAAZOTEQUIET000001", SecretAccessKey: "s2"}
	keys := func(akid, _ string) (Key, error) {
		switch akid {
		case flood.AccessKeyID:
			return Key{Secret: flood.SecretAccessKey, Active: true}, nil
		case quiet.AccessKeyID:
			return Key{Secret: quiet.SecretAccessKey, Active: true}, nil
		}
		return Key{}, ErrUnknownKey
	}
	v := &Verifier{Region: "local", Service: "azote", Now: func() time.Time { return clock },
		MaxReplayEntries: 64, MaxReplayPerKey: 16}

	quietReq := signedAt(t, quiet, start, 0)
	if _, err := v.Verify(quietReq, EmptyPayloadHash, keys); err != nil {
		t.Fatal(err)
	}
	// 10 requests a second for 20 seconds: 200 signatures, far over both
	// the key's quota and the whole cache.
	var first, last *http.Request
	n := 0
	for s := 0; s < 20; s++ {
		clock = start.Add(time.Duration(s) * time.Second)
		for i := 0; i < 10; i++ {
			n++
			r := signedAt(t, flood, clock, n)
			if _, err := v.Verify(r, EmptyPayloadHash, keys); err != nil {
				t.Fatalf("flooding key, request %d at +%ds: %v", n, s, err)
			}
			if first == nil {
				first = signedAt(t, flood, clock, n)
			}
			last = signedAt(t, flood, clock, n)
		}
	}
	if h := v.replay.len(); h > 16+1 {
		t.Errorf("cache holds %d signatures, want at most the flooding key's quota plus the quiet key's one", h)
	}
	// The quiet key still gets in, and its replay is still refused.
	if _, err := v.Verify(signedAt(t, quiet, clock, 1), EmptyPayloadHash, keys); err != nil {
		t.Errorf("quiet key after the flood: %v", err)
	}
	if _, err := v.Verify(quietReq, EmptyPayloadHash, keys); !errors.Is(err, ErrReplay) {
		t.Errorf("quiet key's replay after the flood: %v, want ErrReplay", err)
	}
	// The flooding key's replays are refused, recent or evicted.
	if _, err := v.Verify(last, EmptyPayloadHash, keys); !errors.Is(err, ErrReplay) {
		t.Errorf("replay of the newest flood request: %v, want ErrReplay", err)
	}
	if _, err := v.Verify(first, EmptyPayloadHash, keys); !errors.Is(err, ErrSkew) {
		t.Errorf("replay of an evicted flood request: %v, want ErrSkew", err)
	}
	// More than the quota inside one second throttles that key alone.
	clock = clock.Add(time.Second)
	var throttled error
	for i := 0; i < 17 && throttled == nil; i++ {
		n++
		_, throttled = v.Verify(signedAt(t, flood, clock, n), EmptyPayloadHash, keys)
	}
	if !errors.Is(throttled, ErrReplayCacheFull) {
		t.Errorf("17 requests in one second with a quota of 16: %v, want ErrReplayCacheFull", throttled)
	}
	if _, err := v.Verify(signedAt(t, quiet, clock, 2), EmptyPayloadHash, keys); err != nil {
		t.Errorf("quiet key while the other is throttled: %v", err)
	}
}

// TestReplayCacheFullShedsHeaviest: many keys together over the cache's
// bound lose entries from the heaviest first; a light key keeps its own.
func TestReplayCacheFullShedsHeaviest(t *testing.T) {
	var c replayCache
	lim := replayLimits{skew: 300, max: 100, perKey: 1000}
	now := int64(1_000_000)
	sig := func(n int) (s [32]byte) {
		s[0], s[1], s[2] = byte(n), byte(n>>8), byte(n>>16)
		return s
	}
	if err := c.remember("light", sig(0), now, now, lim); err != nil {
		t.Fatal(err)
	}
	n := 1
	for s := int64(0); s < 30; s++ {
		for k := 0; k < 4; k++ {
			for i := 0; i < 3; i++ {
				if err := c.remember(fmt.Sprintf("heavy%d", k), sig(n), now+s, now+s, lim); err != nil {
					t.Fatalf("heavy%d at +%ds: %v", k, s, err)
				}
				n++
			}
		}
	}
	if c.total+len(c.keys) > lim.max {
		t.Errorf("cache holds %d signatures and %d keys, over %d", c.total, len(c.keys), lim.max)
	}
	if err := c.remember("light", sig(0), now, now+30, lim); !errors.Is(err, ErrReplay) {
		t.Errorf("light key's replay after the heavy ones filled the cache: %v, want ErrReplay", err)
	}
}

// TestReplayCacheNeverForgetsAReplay: whatever the bounds shed, a
// signature accepted inside the window is never accepted again.
func TestReplayCacheNeverForgetsAReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var c replayCache
	lim := replayLimits{skew: 5, max: 40, perKey: 8}
	type acc struct {
		key string
		sig [32]byte
		t   int64
	}
	var accepted []acc
	now := int64(1_000_000)
	for i := 0; i < 20000; i++ {
		if rng.IntN(20) == 0 {
			now++
		}
		key := fmt.Sprintf("k%d", rng.IntN(12))
		if rng.IntN(3) == 0 && len(accepted) > 0 {
			// A replay of something accepted that is still in the window.
			a := accepted[rng.IntN(len(accepted))]
			if a.t+lim.skew >= now {
				if err := c.remember(a.key, a.sig, a.t, now, lim); err == nil {
					t.Fatalf("replay of %s's %x dated %d accepted at %d", a.key, a.sig[:4], a.t, now)
				}
			}
			continue
		}
		var s [32]byte
		s[0], s[1], s[2], s[3] = byte(i), byte(i>>8), byte(i>>16), 0xaa
		ts := now - int64(rng.IntN(int(lim.skew)))
		if c.remember(key, s, ts, now, lim) == nil {
			accepted = append(accepted, acc{key, s, ts})
		}
		if c.total+len(c.keys) > lim.max+1 {
			t.Fatalf("cache over its bound: %d signatures, %d keys", c.total, len(c.keys))
		}
	}
	if len(accepted) < 1000 {
		t.Errorf("only %d of the requests were accepted", len(accepted))
	}
}
