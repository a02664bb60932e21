package mfa

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

const (
	// MaxFailures wrong codes in a row lock a device. With three steps
	// acceptable a random guess wins with odds of 3 in a million, so
	// unthrottled guessing at a thousand tries a second succeeds within
	// minutes; the lockout is what makes six digits enough.
	MaxFailures = 5
	// LockoutDuration is how long a locked device refuses every code.
	LockoutDuration = 5 * time.Minute
	// Drift is how many steps either side of now a code may belong to
	// (RFC 6238 §5.2 recommends at most one).
	Drift = 1
)

// Errors from Enable and Verify; match them with errors.Is.
var (
	ErrInvalidCode    = errors.New("mfa: invalid code")
	ErrReplayed       = errors.New("mfa: code already used")
	ErrLocked         = errors.New("mfa: device locked after too many failures")
	ErrNotConsecutive = errors.New("mfa: codes are not consecutive")
	ErrNotEnabled     = errors.New("mfa: device not enabled")
	ErrAlreadyEnabled = errors.New("mfa: device already enabled")
)

// Device is the persisted state of one virtual MFA device; the caller
// stores it (JSON) and passes it back. A Device is not safe for concurrent
// use: see the package comment.
type Device struct {
	// Secret is the raw HMAC key. The caller encrypts it before storing;
	// this package only reads it.
	Secret []byte `json:"secret"`
	// LastCounter is the highest time step ever accepted. Codes for a step
	// at or below it are refused, which makes every code single-use and
	// also refuses older codes an attacker may have seen.
	LastCounter uint64 `json:"last_counter"`
	// Failures counts wrong codes since the last success or lockout end.
	Failures int `json:"failures"`
	// LockedUntil is the end of the current lockout; zero when not locked.
	LockedUntil time.Time `json:"locked_until,omitzero"`
	Enabled     bool      `json:"enabled"`
}

// Enable activates a device from two consecutive codes, as AWS's
// EnableMFADevice does: the user types the code on screen, waits for the
// next one and types it. code1 must be for some step c and code2 for c+1,
// where c+1 is a step Verify would accept at now (now-Drift .. now+Drift),
// so c is in now-1-Drift .. now+Drift-1: the user may be a full step slow
// because of the wait. c must also be above LastCounter, so a device that
// was disabled and enabled again cannot reuse spent codes.
//
// On success the device is Enabled and LastCounter is c+1, so neither code
// can be replayed through Verify. Enable does not count failures or honour
// lockout: the device cannot sign anyone in yet, and guessing two
// consecutive codes is a 1e-12 chance per try.
func (d *Device) Enable(code1, code2 string, now time.Time) error {
	if d.Enabled {
		return ErrAlreadyEnabled
	}
	if len(d.Secret) < MinSecretSize {
		return fmt.Errorf("%w: %d bytes, need at least %d", ErrBadSecret, len(d.Secret), MinSecretSize)
	}
	if !wellFormed(code1) || !wellFormed(code2) {
		return ErrInvalidCode
	}
	n := Step(now)
	lo, hi := window(n, Drift+1, Drift)
	// Every candidate is computed and compared, with no early exit, so
	// the time taken says nothing about which step (if any) matched.
	var m1, m2 [2*Drift + 2]int
	for i, c := 0, lo; c <= hi; i, c = i+1, c+1 {
		want := StepCode(d.Secret, c)
		m1[i] = equal(code1, want)
		m2[i] = equal(code2, want)
	}
	seen1, seen2 := 0, 0
	found := false
	var c uint64 // the highest step whose pair (c, c+1) matched
	for i := uint64(0); lo+i <= hi; i++ {
		seen1 |= m1[i]
		seen2 |= m2[i]
		if i > 0 && m1[i-1]&m2[i] == 1 {
			found, c = true, lo+i-1
		}
	}
	switch {
	case found && c <= d.LastCounter:
		return ErrReplayed
	case found:
		d.Enabled = true
		d.LastCounter = c + 1
		d.Failures = 0
		d.LockedUntil = time.Time{}
		return nil
	case seen1&seen2 == 1:
		return ErrNotConsecutive
	default:
		return ErrInvalidCode
	}
}

// Verify accepts code if it is the TOTP for the step of now or Drift steps
// either side (clock drift between host and phone) and that step is above
// LastCounter. On success LastCounter becomes that step and Failures 0.
//
// A wrong or malformed code counts a failure; the MaxFailures-th locks the
// device for LockoutDuration, during which every code, right or not, gets
// ErrLocked so a locked device tells a guesser nothing. The failure that
// triggers the lock returns an error that is both ErrInvalidCode and
// ErrLocked. A replayed code is refused with ErrReplayed and does not count
// as a failure: it is the right code, most likely submitted twice.
func (d *Device) Verify(code string, now time.Time) error {
	if !d.Enabled {
		return ErrNotEnabled
	}
	if !d.LockedUntil.IsZero() {
		if now.Before(d.LockedUntil) {
			return ErrLocked
		}
		d.LockedUntil = time.Time{}
		d.Failures = 0
	}
	if len(d.Secret) < MinSecretSize {
		return fmt.Errorf("%w: %d bytes, need at least %d", ErrBadSecret, len(d.Secret), MinSecretSize)
	}
	if !wellFormed(code) {
		return d.fail(now)
	}
	n := Step(now)
	lo, hi := window(n, Drift, Drift)
	// Compare against every step in the window without an early exit, and
	// keep the highest match above LastCounter: in the one-in-a-million
	// case that two steps share a code, taking the higher spends both.
	var match, fresh, best uint64
	for c := lo; c <= hi; c++ {
		eq := uint64(equal(code, StepCode(d.Secret, c)))
		match |= eq
		if eq == 1 && c > d.LastCounter {
			fresh, best = 1, c
		}
	}
	switch {
	case fresh == 1:
		d.LastCounter = best
		d.Failures = 0
		return nil
	case match == 1:
		return ErrReplayed
	default:
		return d.fail(now)
	}
}

// Locked reports whether the device refuses every code at now.
func (d *Device) Locked(now time.Time) bool {
	return !d.LockedUntil.IsZero() && now.Before(d.LockedUntil)
}

// fail counts one failure and starts the lockout on the last allowed.
func (d *Device) fail(now time.Time) error {
	d.Failures++
	if d.Failures >= MaxFailures {
		// Round(0) drops the monotonic reading so the value in memory
		// compares the same way as the one read back from JSON.
		d.LockedUntil = now.Add(LockoutDuration).Round(0)
		return fmt.Errorf("%w (%w)", ErrInvalidCode, ErrLocked)
	}
	return ErrInvalidCode
}

// StepCode is the code for time step c: TOTP of any time inside that step.
func StepCode(secret []byte, c uint64) string {
	return HOTP(secret, c, Digits, nil)
}

// window is [n-before, n+after], clipped at 0 so early steps do not wrap.
func window(n uint64, before, after uint64) (lo, hi uint64) {
	return n - min(n, before), n + after
}

// wellFormed reports whether code is exactly Digits ASCII digits. Its
// length and alphabet are public, so checking them is not a timing leak.
func wellFormed(code string) bool {
	if len(code) != Digits {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

func equal(a, b string) int {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b))
}
