package mfa

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// normalise is the spelling DecodeSecret must accept, written separately
// from it: ASCII white space dropped, ASCII letters upper-cased, trailing
// '=' removed.
func normalise(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case strings.ContainsRune(" \t\n\r\v\f", r):
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimRight(b.String(), "=")
}

func FuzzDecodeSecret(f *testing.F) {
	for _, s := range []string{
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "gezd gnbv gy3t qojq", "MZXW6YTBOI======",
		"MY", "MZ", "M", "", "====", "MZ=XW", "mzxw6ytb0i", "MZXW6YTBOİ", "\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Any string decodes to its canonical spelling or fails cleanly.
		b, err := DecodeSecret(s)
		if err != nil {
			if !errors.Is(err, ErrBadSecret) || b != nil {
				t.Fatalf("DecodeSecret(%q) = %x, %v", s, b, err)
			}
		} else {
			if len(b) == 0 {
				t.Fatalf("DecodeSecret(%q) accepted an empty secret", s)
			}
			if enc := EncodeSecret(b); enc != normalise(s) {
				t.Fatalf("DecodeSecret(%q) = %x, which encodes to %q, not %q", s, b, enc, normalise(s))
			}
		}

		// Any bytes survive EncodeSecret, also when spelled the way a
		// person might copy them: lower case, grouped, padded.
		raw := []byte(s)
		if len(raw) == 0 {
			return
		}
		enc := EncodeSecret(raw)
		if strings.ContainsAny(enc, "=abcdefghijklmnopqrstuvwxyz") {
			t.Fatalf("EncodeSecret(%x) = %q: padded or lower case", raw, enc)
		}
		var messy strings.Builder
		for i, r := range strings.ToLower(enc) {
			if i > 0 && i%4 == 0 {
				messy.WriteByte(' ')
			}
			messy.WriteRune(r)
		}
		messy.WriteString("==\n")
		for _, in := range []string{enc, messy.String()} {
			back, err := DecodeSecret(in)
			if err != nil || !bytes.Equal(back, raw) {
				t.Fatalf("DecodeSecret(%q) = %x, %v; want %x", in, back, err, raw)
			}
		}
	})
}

// fuzzSecret is fixed so the fuzzer explores codes, times and state.
var fuzzSecret = []byte("fuzz-secret-0123456789")

// allowed returns the steps Verify may accept at now, computed in signed
// arithmetic independently of the package's window helper.
func allowed(now time.Time) []uint64 {
	var out []uint64
	n := now.Unix() / 30
	if now.Unix() < 0 {
		n = 0
	}
	for s := n - 1; s <= n+1; s++ {
		if s >= 0 {
			out = append(out, uint64(s))
		}
	}
	return out
}

func sameState(a, b Device) bool {
	return bytes.Equal(a.Secret, b.Secret) && a.LastCounter == b.LastCounter &&
		a.Failures == b.Failures && a.LockedUntil.Equal(b.LockedUntil) && a.Enabled == b.Enabled
}

func FuzzVerify(f *testing.F) {
	const base = int64(1_700_000_000)
	nowStep := uint64(base / 30)
	f.Add(HOTP(fuzzSecret, nowStep, 6, nil), base, uint64(5), uint8(0), false)
	f.Add(HOTP(fuzzSecret, nowStep-1, 6, nil), base, uint64(1), uint8(4), false)
	f.Add(HOTP(fuzzSecret, nowStep+1, 6, nil), base, uint64(0), uint8(2), false)
	f.Add(HOTP(fuzzSecret, nowStep+2, 6, nil), base, uint64(10), uint8(4), false)
	f.Add(HOTP(fuzzSecret, nowStep, 6, nil), base, uint64(0), uint8(0), true)
	f.Add(HOTP(fuzzSecret, 1, 6, nil), int64(0), uint64(0), uint8(0), false)
	f.Add(HOTP(fuzzSecret, 0, 6, nil), int64(-1), uint64(0), uint8(0), false)
	f.Add("１２３４５６", base, uint64(3), uint8(1), false)
	f.Add(" 12345", base, uint64(3), uint8(0), false)
	f.Add("", int64(-1<<62), uint64(0), uint8(0), false)
	f.Add("000000", int64(1<<62), uint64(1<<60), uint8(3), true)
	f.Fuzz(func(t *testing.T, code string, unix int64, behind uint64, failures uint8, locked bool) {
		now := time.Unix(jsonRange(unix), 0)
		d := &Device{
			Secret:   fuzzSecret,
			Enabled:  true,
			Failures: int(failures) % MaxFailures,
		}
		// LastCounter some steps behind (or, with wrap, ahead of) now.
		d.LastCounter = Step(now) - behind
		if locked {
			d.Failures = MaxFailures
			d.LockedUntil = now.Add(time.Second)
		}
		before := *d

		err := d.Verify(code, now)

		var fresh, spent []uint64
		for _, s := range allowed(now) {
			if HOTP(fuzzSecret, s, 6, nil) == code {
				if s > before.LastCounter {
					fresh = append(fresh, s)
				} else {
					spent = append(spent, s)
				}
			}
		}
		switch {
		case locked:
			if !errors.Is(err, ErrLocked) || !sameState(*d, before) {
				t.Fatalf("locked device: err %v, state %+v -> %+v", err, before, *d)
			}
		case err == nil:
			if len(fresh) == 0 {
				t.Fatalf("accepted %q at step %d with LastCounter %d: not a fresh code in the window", code, Step(now), before.LastCounter)
			}
			if d.LastCounter != fresh[len(fresh)-1] || d.Failures != 0 {
				t.Fatalf("after accepting: LastCounter %d (want %d) Failures %d", d.LastCounter, fresh[len(fresh)-1], d.Failures)
			}
		case errors.Is(err, ErrReplayed):
			if len(fresh) != 0 || len(spent) == 0 {
				t.Fatalf("ErrReplayed for %q: fresh %v spent %v", code, fresh, spent)
			}
			if !sameState(*d, before) {
				t.Fatalf("replay changed state %+v -> %+v", before, *d)
			}
		case errors.Is(err, ErrInvalidCode):
			if len(fresh)+len(spent) != 0 {
				t.Fatalf("ErrInvalidCode for %q, which is the code of step %v", code, append(fresh, spent...))
			}
			if d.LastCounter != before.LastCounter || d.Failures != before.Failures+1 {
				t.Fatalf("failure: %+v -> %+v", before, *d)
			}
			if lock := d.Failures >= MaxFailures; lock != errors.Is(err, ErrLocked) || lock != d.Locked(now) {
				t.Fatalf("failure %d: err %v, Locked %v", d.Failures, err, d.Locked(now))
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}

		// The caller stores the device as JSON between requests.
		js, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("marshal %+v: %v", *d, err)
		}
		var back Device
		if err := json.Unmarshal(js, &back); err != nil || !sameState(back, *d) {
			t.Fatalf("JSON round trip %s: %+v, %v", js, back, err)
		}
	})
}

// jsonRange folds unix into the seconds of years 1 to 9999 less a
// lockout: encoding/json refuses to marshal a time.Time outside years
// 0..9999, so a Device whose lockout ends later could not be stored, and
// near the int64 edge time.Time.Add saturates. Neither is a clock a
// server has.
func jsonRange(unix int64) int64 {
	const lo, hi = -62135596800, 253402300799 - int64(LockoutDuration/time.Second)
	if unix >= lo && unix <= hi {
		return unix
	}
	r := (unix - lo) % (hi - lo + 1)
	if r < 0 {
		r += hi - lo + 1
	}
	return lo + r
}

func FuzzEnable(f *testing.F) {
	const base = int64(1_700_000_000)
	n := uint64(base / 30)
	c := func(s uint64) string { return HOTP(fuzzSecret, s, 6, nil) }
	f.Add(c(n), c(n+1), base, uint64(0))
	f.Add(c(n-2), c(n-1), base, uint64(0))
	f.Add(c(n-1), c(n), base, n)
	f.Add(c(n), c(n), base, uint64(0))
	f.Add(c(n+1), c(n+2), base, uint64(0))
	f.Add(c(0), c(1), int64(0), uint64(0))
	f.Add("abcdef", "", int64(-5), uint64(0))
	f.Fuzz(func(t *testing.T, code1, code2 string, unix int64, last uint64) {
		now := time.Unix(unix, 0)
		d := &Device{Secret: fuzzSecret, LastCounter: last}
		err := d.Enable(code1, code2, now)
		if err != nil {
			if d.Enabled || d.LastCounter != last {
				t.Fatalf("refused Enable changed state: %+v", d)
			}
			if !errors.Is(err, ErrInvalidCode) && !errors.Is(err, ErrNotConsecutive) && !errors.Is(err, ErrReplayed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// Accepted: code2 is for a step Verify allows now, code1 for the
		// step before it, and that step was above the replay floor.
		ok := false
		for _, s := range allowed(now) {
			if s >= 1 && s-1 > last && HOTP(fuzzSecret, s, 6, nil) == code2 && HOTP(fuzzSecret, s-1, 6, nil) == code1 && d.LastCounter == s {
				ok = true
			}
		}
		if !ok || !d.Enabled {
			t.Fatalf("Enable(%q, %q) at step %d, floor %d accepted, LastCounter %d", code1, code2, Step(now), last, d.LastCounter)
		}
	})
}
