package mfa

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	testSecret = []byte("12345678901234567890")
	// testNow sits 10 s into its step, so ±Period lands in the
	// neighbouring steps, not on a boundary.
	testNow  = time.Unix(1111111110, 0).UTC()
	testStep = Step(testNow)
)

// at is the time offset whole steps from testNow.
func at(steps int) time.Time { return testNow.Add(time.Duration(steps) * Period) }

// code is the code for the step offset steps from testStep.
func code(steps int) string { return TOTP(testSecret, at(steps)) }

// wrongCode returns a well-formed code that no step within ±3 of
// testStep produces, so it is wrong whatever window is in force.
func wrongCode(t *testing.T) string {
	t.Helper()
	used := map[string]bool{}
	for i := -3; i <= 3; i++ {
		used[code(i)] = true
	}
	for n := 0; n < 1_000_000; n++ {
		c := fmt.Sprintf("%06d", (n*7919+123456)%1_000_000)
		if !used[c] {
			return c
		}
	}
	t.Fatal("no wrong code")
	return ""
}

// enabled is a device that already accepted codes up to a few steps ago.
func enabled() *Device {
	return &Device{Secret: testSecret, Enabled: true, LastCounter: testStep - 5}
}

func TestVerifyDriftWindow(t *testing.T) {
	tests := []struct {
		offset int
		err    error
	}{
		{-3, ErrInvalidCode},
		{-2, ErrInvalidCode},
		{-1, nil},
		{0, nil},
		{1, nil},
		{2, ErrInvalidCode},
		{3, ErrInvalidCode},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.offset), func(t *testing.T) {
			d := enabled()
			err := d.Verify(code(tt.offset), testNow)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("Verify(code at step %+d) = %v, want %v", tt.offset, err, tt.err)
			}
			if err == nil {
				if want := uint64(int64(testStep) + int64(tt.offset)); d.LastCounter != want {
					t.Errorf("LastCounter = %d, want %d", d.LastCounter, want)
				}
			} else if d.LastCounter != testStep-5 || d.Failures != 1 {
				t.Errorf("after refusal LastCounter = %d, Failures = %d; want %d, 1", d.LastCounter, d.Failures, testStep-5)
			}
		})
	}
}

// The window follows now: a code is good anywhere inside its step and
// the steps either side, and not one second beyond.
func TestVerifyWindowEdges(t *testing.T) {
	stepStart := time.Unix(int64(testStep)*30, 0)
	c := code(0)
	tests := []struct {
		now time.Time
		ok  bool
	}{
		{stepStart.Add(-Period - time.Second), false},
		{stepStart.Add(-Period), true},
		{stepStart, true},
		{stepStart.Add(2*Period - time.Nanosecond), true},
		{stepStart.Add(2 * Period), false},
	}
	for _, tt := range tests {
		d := enabled()
		err := d.Verify(c, tt.now)
		if (err == nil) != tt.ok {
			t.Errorf("Verify at %v (step %d, code step %d) = %v, want ok=%v", tt.now, Step(tt.now), testStep, err, tt.ok)
		}
	}
}

func TestVerifyReplay(t *testing.T) {
	d := enabled()
	if err := d.Verify(code(0), testNow); err != nil {
		t.Fatal(err)
	}
	if err := d.Verify(code(0), testNow); !errors.Is(err, ErrReplayed) {
		t.Fatalf("same code twice = %v, want ErrReplayed", err)
	}
	// Still replayed a whole step later, while the code is in the window.
	if err := d.Verify(code(0), at(1)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("same code next step = %v, want ErrReplayed", err)
	}
	if d.Failures != 0 {
		t.Errorf("replays counted %d failures, want 0", d.Failures)
	}

	// A newer step spends every older one, even inside the window.
	d = enabled()
	if err := d.Verify(code(1), testNow); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{-1, 0, 1} {
		if err := d.Verify(code(off), testNow); !errors.Is(err, ErrReplayed) {
			t.Errorf("code at step %+d after step +1 = %v, want ErrReplayed", off, err)
		}
	}
	// The next step is fresh once now reaches it.
	if err := d.Verify(code(2), at(1)); err != nil {
		t.Errorf("code at step +2 one step later = %v", err)
	}
}

func TestVerifyLockout(t *testing.T) {
	d := enabled()
	bad := wrongCode(t)
	for i := 1; i < MaxFailures; i++ {
		err := d.Verify(bad, testNow)
		if !errors.Is(err, ErrInvalidCode) || errors.Is(err, ErrLocked) {
			t.Fatalf("failure %d = %v, want ErrInvalidCode only", i, err)
		}
		if d.Failures != i || d.Locked(testNow) {
			t.Fatalf("after failure %d: Failures = %d, Locked = %v", i, d.Failures, d.Locked(testNow))
		}
	}
	err := d.Verify(bad, testNow)
	if !errors.Is(err, ErrInvalidCode) || !errors.Is(err, ErrLocked) {
		t.Fatalf("failure %d = %v, want ErrInvalidCode and ErrLocked", MaxFailures, err)
	}
	until := testNow.Add(LockoutDuration)
	if !d.LockedUntil.Equal(until) || !d.Locked(testNow) {
		t.Fatalf("LockedUntil = %v, want %v", d.LockedUntil, until)
	}

	// While locked the right code is refused, and refusals do not extend
	// or count anything.
	for _, now := range []time.Time{testNow, testNow.Add(time.Second), until.Add(-time.Nanosecond)} {
		if err := d.Verify(TOTP(testSecret, now), now); !errors.Is(err, ErrLocked) {
			t.Errorf("right code at %v while locked = %v, want ErrLocked", now, err)
		}
		if err := d.Verify(bad, now); !errors.Is(err, ErrLocked) {
			t.Errorf("wrong code at %v while locked = %v, want ErrLocked", now, err)
		}
	}
	if !d.LockedUntil.Equal(until) || d.Failures != MaxFailures {
		t.Fatalf("locked refusals changed state: LockedUntil %v Failures %d", d.LockedUntil, d.Failures)
	}
	if d.LastCounter != testStep-5 {
		t.Fatalf("LastCounter moved while locked: %d", d.LastCounter)
	}

	// At the end of the lockout the right code works again.
	if err := d.Verify(TOTP(testSecret, until), until); err != nil {
		t.Fatalf("right code at lockout end = %v", err)
	}
	if d.Failures != 0 || !d.LockedUntil.IsZero() || d.Locked(until) {
		t.Errorf("after success: Failures %d LockedUntil %v", d.Failures, d.LockedUntil)
	}
}

func TestVerifyLockoutEndResetsFailures(t *testing.T) {
	d := enabled()
	bad := wrongCode(t)
	for range MaxFailures {
		_ = d.Verify(bad, testNow)
	}
	// A wrong code after the lockout is the first of a fresh series.
	later := testNow.Add(LockoutDuration)
	if err := d.Verify(bad, later); !errors.Is(err, ErrInvalidCode) || errors.Is(err, ErrLocked) {
		t.Fatalf("wrong code after lockout = %v, want ErrInvalidCode only", err)
	}
	if d.Failures != 1 {
		t.Errorf("Failures = %d, want 1", d.Failures)
	}
}

func TestVerifySuccessResetsFailures(t *testing.T) {
	d := enabled()
	bad := wrongCode(t)
	for range MaxFailures - 2 {
		_ = d.Verify(bad, testNow)
	}
	if err := d.Verify(code(0), testNow); err != nil {
		t.Fatal(err)
	}
	if d.Failures != 0 {
		t.Fatalf("Failures after success = %d", d.Failures)
	}
	// Had the count not been reset, these would lock the device.
	for i := range MaxFailures - 1 {
		if err := d.Verify(bad, testNow); errors.Is(err, ErrLocked) {
			t.Fatalf("locked after %d failures following a success", i+1)
		}
	}
	if d.Locked(testNow) {
		t.Error("device locked")
	}
}

func TestVerifyMalformed(t *testing.T) {
	good := code(0)
	for _, in := range []string{
		"", "12345", "1234567", "abcdef", "12 345", " " + good, good + "\n",
		"１２３４５６", "-12345", "+12345", "12345\x00", good[:5] + "a",
	} {
		d := enabled()
		if err := d.Verify(in, testNow); !errors.Is(err, ErrInvalidCode) {
			t.Errorf("Verify(%q) = %v, want ErrInvalidCode", in, err)
		}
		if d.Failures != 1 {
			t.Errorf("Verify(%q) counted %d failures, want 1", in, d.Failures)
		}
	}
}

func TestVerifyRefusesDisabledAndBadSecret(t *testing.T) {
	d := &Device{Secret: testSecret, LastCounter: testStep - 5}
	if err := d.Verify(code(0), testNow); !errors.Is(err, ErrNotEnabled) {
		t.Errorf("not enabled: %v", err)
	}
	d = &Device{Secret: testSecret[:MinSecretSize-1], Enabled: true}
	if err := d.Verify(HOTP(d.Secret, testStep, 6, nil), testNow); !errors.Is(err, ErrBadSecret) {
		t.Errorf("short secret: %v", err)
	}
}

// Near the epoch the window is clipped instead of wrapping to huge steps.
func TestVerifyNearEpoch(t *testing.T) {
	d := &Device{Secret: testSecret, Enabled: true}
	now := time.Unix(10, 0) // step 0
	if err := d.Verify(HOTP(testSecret, 0, 6, nil), now); !errors.Is(err, ErrReplayed) {
		t.Errorf("step 0 = %v, want ErrReplayed (LastCounter starts at 0)", err)
	}
	if err := d.Verify(HOTP(testSecret, ^uint64(0), 6, nil), now); !errors.Is(err, ErrInvalidCode) {
		t.Errorf("step -1 wrapped = %v, want ErrInvalidCode", err)
	}
	if err := d.Verify(HOTP(testSecret, 1, 6, nil), now); err != nil {
		t.Errorf("step 1 = %v", err)
	}
}

func TestEnable(t *testing.T) {
	tests := []struct {
		name   string
		c1, c2 string
		err    error
		last   uint64 // LastCounter after success
	}{
		{"current then next", code(0), code(1), nil, testStep + 1},
		{"previous then current", code(-1), code(0), nil, testStep},
		{"slow user", code(-2), code(-1), nil, testStep - 1},
		{"too old", code(-3), code(-2), ErrInvalidCode, 0},
		{"too far ahead", code(1), code(2), ErrInvalidCode, 0},
		{"same code twice", code(0), code(0), ErrNotConsecutive, 0},
		{"reversed", code(1), code(0), ErrNotConsecutive, 0},
		{"gap", code(-1), code(1), ErrNotConsecutive, 0},
		{"second wrong", code(0), "wrong!", ErrInvalidCode, 0},
		{"first wrong", "", code(0), ErrInvalidCode, 0},
		{"first not a code", "999999x", code(0), ErrInvalidCode, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Device{Secret: testSecret}
			err := d.Enable(tt.c1, tt.c2, testNow)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Enable = %v, want %v", err, tt.err)
				}
				if d.Enabled || d.LastCounter != 0 {
					t.Fatalf("refused Enable changed state: %+v", d)
				}
				return
			}
			if err != nil {
				t.Fatalf("Enable = %v", err)
			}
			if !d.Enabled || d.LastCounter != tt.last {
				t.Fatalf("Enabled %v LastCounter %d, want true %d", d.Enabled, d.LastCounter, tt.last)
			}
			// Neither enrolment code can be spent again: replayed if its
			// step is still in Verify's window, out of it otherwise.
			for i, c := range []string{tt.c1, tt.c2} {
				step := tt.last - 1 + uint64(i)
				want := ErrInvalidCode
				if step+1 >= testStep && step <= testStep+1 {
					want = ErrReplayed
				}
				if err := d.Verify(c, testNow); !errors.Is(err, want) {
					t.Errorf("Verify(enrolment code for step %d) = %v, want %v", step, err, want)
				}
			}
			// The following step's code works once it is in the window.
			next := int(tt.last-testStep) + 1
			if err := d.Verify(code(next), at(next)); err != nil {
				t.Errorf("Verify(next code) = %v", err)
			}
		})
	}
}

func TestEnableRefusals(t *testing.T) {
	d := &Device{Secret: testSecret}
	if err := d.Enable(code(0), code(1), testNow); err != nil {
		t.Fatal(err)
	}
	if err := d.Enable(code(1), code(2), at(1)); !errors.Is(err, ErrAlreadyEnabled) {
		t.Errorf("second Enable = %v, want ErrAlreadyEnabled", err)
	}

	// A device disabled by the caller and enabled again keeps its replay
	// floor: spent codes cannot enrol it.
	d = &Device{Secret: testSecret, LastCounter: testStep}
	if err := d.Enable(code(-1), code(0), testNow); !errors.Is(err, ErrReplayed) {
		t.Errorf("Enable with spent codes = %v, want ErrReplayed", err)
	}
	if err := d.Enable(code(0), code(1), testNow); !errors.Is(err, ErrReplayed) {
		t.Errorf("Enable with a spent first code = %v, want ErrReplayed", err)
	}
	if err := d.Enable(code(1), code(2), at(1)); err != nil {
		t.Errorf("Enable with fresh codes = %v", err)
	}

	d = &Device{Secret: testSecret[:10]}
	if err := d.Enable(HOTP(d.Secret, testStep, 6, nil), HOTP(d.Secret, testStep+1, 6, nil), testNow); !errors.Is(err, ErrBadSecret) {
		t.Errorf("short secret = %v, want ErrBadSecret", err)
	}
}

// The caller persists a Device as JSON between requests; a lockout and
// the replay floor must survive the round trip.
func TestDeviceJSON(t *testing.T) {
	d := enabled()
	for range MaxFailures {
		_ = d.Verify(wrongCode(t), testNow)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Device
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Locked(testNow) || back.LastCounter != d.LastCounter || string(back.Secret) != string(d.Secret) || !back.Enabled {
		t.Fatalf("round trip lost state: %s -> %+v", b, back)
	}
	if err := back.Verify(code(0), testNow.Add(time.Minute)); !errors.Is(err, ErrLocked) {
		t.Errorf("restored device: %v, want ErrLocked", err)
	}

	fresh, err := json.Marshal(enabled())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(fresh), "locked_until") {
		t.Errorf("unlocked device serialises locked_until: %s", fresh)
	}
}
