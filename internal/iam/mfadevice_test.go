package iam

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/mfa"
)

func TestMFACodeSpentOnce(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	dave, _, seed, serial := e.mfaUser("dave")

	code := e.code(seed)
	cr, err := e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{SerialNumber: serial, TokenCode: code})
	must(t, err)
	if s := e.sessionCaller(cr); !s.MFA {
		t.Fatal("session made with a code has no MFA")
	}
	_, err = e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: code})
	wantCode(t, err, api.CodeInvalidAuthenticationCode)
	// The same code through AssumeRole is refused too: one device, one
	// counter.
	_, err = e.svc.CreateRole("R", trustDoc(dave.ARN, ""), 0)
	must(t, err)
	_, err = e.svc.AssumeRole(dave, api.AssumeRoleRequest{RoleArn: "R", RoleSessionName: "s", TokenCode: code})
	wantCode(t, err, api.CodeInvalidAuthenticationCode)
	// So is the previous step's code, although it is inside the drift
	// window: a spent step closes everything up to it.
	_, err = e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.codeAt(seed, -1)})
	wantCode(t, err, api.CodeInvalidAuthenticationCode)

	e.reopen()
	_, err = e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: code})
	wantCode(t, err, api.CodeInvalidAuthenticationCode)
	e.nextStep()
	if _, err := e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.code(seed)}); err != nil {
		t.Fatalf("next step's code after reopen: %v", err)
	}

	t.Run("device of someone else", func(t *testing.T) {
		erin, _, erinSeed, _ := e.mfaUser("erin")
		_, err := e.svc.GetSessionToken(erin, api.GetSessionTokenRequest{SerialNumber: serial, TokenCode: e.code(seed)})
		wantCode(t, err, api.CodeInvalidAuthenticationCode)
		// A user without a device cannot claim MFA.
		frank, _ := e.user("frank")
		_, err = e.svc.GetSessionToken(frank, api.GetSessionTokenRequest{TokenCode: e.code(erinSeed)})
		wantCode(t, err, api.CodeInvalidAuthenticationCode)
		// Nor spend erin's code through dave's device.
		_, err = e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.code(erinSeed)})
		wantCode(t, err, api.CodeInvalidAuthenticationCode)
		if _, err := e.svc.GetSessionToken(erin, api.GetSessionTokenRequest{TokenCode: e.code(erinSeed)}); err != nil {
			t.Fatalf("erin's own code: %v", err)
		}
	})
}

func TestMFALockout(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	dave, _, seed, _ := e.mfaUser("dave")

	for i := 1; i <= mfa.MaxFailures; i++ {
		_, err := e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.wrongCode(seed)})
		want := api.CodeInvalidAuthenticationCode
		if i == mfa.MaxFailures {
			want = api.CodeMFALocked
		}
		if !api.IsCode(err, want) {
			t.Fatalf("wrong code %d: %v, want %s", i, err, want)
		}
	}
	lockedAt := e.clk.Now()
	_, err := e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.code(seed)})
	wantCode(t, err, api.CodeMFALocked)

	// The lockout is on disk, not in this process.
	e.reopen()
	e.nextStep()
	_, err = e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.code(seed)})
	wantCode(t, err, api.CodeMFALocked)

	e.clk.Advance(lockedAt.Add(mfa.LockoutDuration - time.Second).Sub(e.clk.Now()))
	_, err = e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.code(seed)})
	wantCode(t, err, api.CodeMFALocked)

	e.clk.Advance(time.Second)
	if _, err := e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.code(seed)}); err != nil {
		t.Fatalf("right code after the lockout: %v", err)
	}
	// The failures were reset with the lockout: four more wrong codes
	// do not lock again.
	for i := 1; i < mfa.MaxFailures; i++ {
		_, err := e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.wrongCode(seed)})
		wantCode(t, err, api.CodeInvalidAuthenticationCode)
	}
	e.nextStep()
	if _, err := e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: e.code(seed)}); err != nil {
		t.Fatalf("right code after four failures: %v", err)
	}
}

func TestMFADevices(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	_, _, seed, serial := e.mfaUser("dave")

	// A second device cannot replace the first: a stolen key must not
	// be able to enrol its own phone.
	dev2, err := e.svc.CreateVirtualMFADevice("dave-second", "dave")
	must(t, err)
	seed2 := seedOf(t, dev2)
	err = e.svc.EnableMFADevice("dave", dev2.SerialNumber, e.codeAt(seed2, -1), e.code(seed2))
	wantCode(t, err, api.CodeLimitExceeded)
	u, err := e.svc.GetUser("dave")
	must(t, err)
	if u.MFASerial != serial {
		t.Fatalf("user's device = %s, want %s", u.MFASerial, serial)
	}
	// Enabling the same device again, or someone else's, is refused.
	err = e.svc.EnableMFADevice("dave", serial, e.codeAt(seed, -1), e.code(seed))
	wantCode(t, err, api.CodeEntityAlreadyExists)
	_, err = e.svc.CreateUser("erin")
	must(t, err)
	err = e.svc.EnableMFADevice("erin", dev2.SerialNumber, e.codeAt(seed2, -1), e.code(seed2))
	wantCode(t, err, api.CodeNoSuchEntity)
	// An enabled device cannot be made again under the same name.
	_, err = e.svc.CreateVirtualMFADevice("dave-phone", "dave")
	wantCode(t, err, api.CodeEntityAlreadyExists)
	_, err = e.svc.CreateVirtualMFADevice("x", "nobody")
	wantCode(t, err, api.CodeNoSuchEntity)

	devs, err := e.svc.ListMFADevices("dave")
	must(t, err)
	enabled := map[string]bool{}
	for _, d := range devs {
		enabled[d.SerialNumber] = d.Enabled
	}
	if len(devs) != 2 || !enabled[serial] || enabled[dev2.SerialNumber] {
		t.Errorf("dave's devices = %+v", devs)
	}

	t.Run("delete user", func(t *testing.T) {
		must(t, e.svc.AddUserToGroup("dave", "Administrators"))
		keys, err := e.svc.ListAccessKeys("dave")
		must(t, err)
		if len(keys) != 1 {
			t.Fatalf("dave has %d keys, want 1", len(keys))
		}
		steps := []struct {
			name string
			fix  func() error
		}{
			{"access key", func() error { return e.svc.DeleteAccessKey("dave", keys[0].AccessKeyID) }},
			{"MFA device", func() error { return e.svc.DeactivateMFADevice("dave", serial) }},
			{"group", func() error { return e.svc.RemoveUserFromGroup("dave", "Administrators") }},
			{"policy", func() error { return e.svc.DetachPolicy(KindUser, "dave", "ReadOnlyAccess") }},
		}
		must(t, e.svc.AttachPolicy(KindUser, "dave", "ReadOnlyAccess"))
		for _, s := range steps {
			if err := e.svc.DeleteUser("dave"); !api.IsCode(err, api.CodeDeleteConflict) {
				t.Fatalf("DeleteUser with its %s left: %v, want DeleteConflict", s.name, err)
			}
			must(t, s.fix())
		}
		must(t, e.svc.DeleteUser("dave"))
		_, err = e.svc.GetUser("dave")
		wantCode(t, err, api.CodeNoSuchEntity)
		wantCode(t, e.svc.DeleteUser("dave"), api.CodeNoSuchEntity)
		// The deactivated device is gone; the never-enabled one stays
		// until someone remakes or removes it.
		devs, err := e.svc.ListMFADevices("dave")
		must(t, err)
		if len(devs) != 1 || devs[0].SerialNumber != dev2.SerialNumber {
			t.Errorf("devices after DeleteUser = %+v", devs)
		}
	})
}

// TestMFAConcurrentSpend: many requests racing with one valid code get
// exactly one session between them.
func TestMFAConcurrentSpend(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	dave, _, seed, _ := e.mfaUser("dave")
	code := e.code(seed)

	const n = 20
	var ok atomic.Int32
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = e.svc.GetSessionToken(dave, api.GetSessionTokenRequest{TokenCode: code})
			if errs[i] == nil {
				ok.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := ok.Load(); got != 1 {
		t.Fatalf("%d of %d requests spent the same code, want exactly 1", got, n)
	}
	for i, err := range errs {
		if err != nil && !api.IsCode(err, api.CodeInvalidAuthenticationCode) {
			t.Errorf("request %d: %v, want InvalidAuthenticationCode", i, err)
		}
	}
}
