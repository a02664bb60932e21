package iam

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/mfa"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/testutil"
)

// newTestSealer is the host key's wrapper (internal/keys) under a
// random key: what Open is given in production, minus the file.
func newTestSealer(t testing.TB) *keys.Host {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	w, err := keys.NewHost(key)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// t0 sits 10 s into its TOTP step so that moving by whole periods never
// lands on a step boundary.
var t0 = time.Date(2026, 3, 2, 9, 0, 10, 0, time.UTC)

// env is one IAM service on a bbolt file in a temporary directory.
type env struct {
	t    testing.TB
	path string
	seal *keys.Host
	clk  *testutil.Clock
	st   *store.Bolt
	svc  *Service
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "iam.db"), seal: newTestSealer(t), clk: testutil.NewClock(t0)}
	st, err := store.OpenBolt(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	t.Cleanup(func() { e.st.Close() })
	if e.svc, err = Open(e.st, e.seal, "local", e.clk.Now); err != nil {
		t.Fatal(err)
	}
	return e
}

// reopen closes the database and opens it and the service again, as an
// azoted restart does: only what was persisted survives.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.st.Close(); err != nil {
		e.t.Fatal(err)
	}
	st, err := store.OpenBolt(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.st = st
	if e.svc, err = Open(e.st, e.seal, "local", e.clk.Now); err != nil {
		e.t.Fatalf("reopen: %v", err)
	}
}

// code is the code of seed for the current step.
func (e *env) code(seed []byte) string { return mfa.StepCode(seed, mfa.Step(e.clk.Now())) }

// codeAt is the code of seed for the current step plus off.
func (e *env) codeAt(seed []byte, off int) string {
	return mfa.StepCode(seed, uint64(int64(mfa.Step(e.clk.Now()))+int64(off)))
}

// wrongCode is a well-formed code no step near now produces.
func (e *env) wrongCode(seed []byte) string {
	e.t.Helper()
	used := map[string]bool{}
	for off := -3; off <= 3; off++ {
		used[e.codeAt(seed, off)] = true
	}
	for n := 0; n < 1_000_000; n++ {
		if c := fmt.Sprintf("%06d", (n*7919+123456)%1_000_000); !used[c] {
			return c
		}
	}
	e.t.Fatal("no wrong code")
	return ""
}

// nextStep moves the clock one TOTP period on, so a fresh code exists.
func (e *env) nextStep() { e.clk.Advance(mfa.Period) }

func seedOf(t testing.TB, dev api.NewVirtualMFADevice) []byte {
	t.Helper()
	seed, err := mfa.DecodeSecret(dev.Base32StringSeed)
	if err != nil {
		t.Fatalf("decode seed %q: %v", dev.Base32StringSeed, err)
	}
	return seed
}

// initAccount runs the bootstrap with admin as the first user and
// returns its answer and root's MFA seed; the clock ends one step after
// the enrolment codes, so root's next code is fresh.
func (e *env) initAccount(admin string) (api.InitResponse, []byte) {
	e.t.Helper()
	dev, err := e.svc.BeginInit()
	if err != nil {
		e.t.Fatal(err)
	}
	seed := seedOf(e.t, dev)
	resp, err := e.svc.Init(api.InitRequest{RootCode1: e.codeAt(seed, -1), RootCode2: e.code(seed), AdminUser: admin})
	if err != nil {
		e.t.Fatalf("Init: %v", err)
	}
	e.nextStep()
	return resp, seed
}

// caller resolves a long-term key to its caller, as the API does for a
// signed request.
func (e *env) caller(akid string) *api.Caller {
	e.t.Helper()
	_, active, c, err := e.svc.Credentials(akid, "")
	if err != nil {
		e.t.Fatalf("Credentials(%s): %v", akid, err)
	}
	if !active {
		e.t.Fatalf("key %s is not active", akid)
	}
	return c
}

// sessionCaller resolves session credentials to their caller.
func (e *env) sessionCaller(cr api.Credentials) *api.Caller {
	e.t.Helper()
	secret, active, c, err := e.svc.Credentials(cr.AccessKeyID, cr.SessionToken)
	if err != nil {
		e.t.Fatalf("Credentials(session %s): %v", cr.AccessKeyID, err)
	}
	if secret != cr.SecretAccessKey || !active {
		e.t.Fatalf("session %s: secret match %v, active %v", cr.AccessKeyID, secret == cr.SecretAccessKey, active)
	}
	return c
}

// user makes a user with one access key and returns its caller.
func (e *env) user(name string) (*api.Caller, api.NewAccessKey) {
	e.t.Helper()
	if _, err := e.svc.CreateUser(name); err != nil {
		e.t.Fatal(err)
	}
	k, err := e.svc.CreateAccessKey(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.caller(k.AccessKeyID), k
}

// mfaUser makes a user with an access key and an enabled MFA device; the
// clock ends one step after enrolment.
func (e *env) mfaUser(name string) (*api.Caller, api.NewAccessKey, []byte, string) {
	e.t.Helper()
	c, k := e.user(name)
	seed, serial := e.enrol(name, name+"-phone")
	return c, k, seed, serial
}

// enrol creates and enables a device for user.
func (e *env) enrol(user, device string) ([]byte, string) {
	e.t.Helper()
	dev, err := e.svc.CreateVirtualMFADevice(device, user)
	if err != nil {
		e.t.Fatal(err)
	}
	seed := seedOf(e.t, dev)
	if err := e.svc.EnableMFADevice(user, dev.SerialNumber, e.codeAt(seed, -1), e.code(seed)); err != nil {
		e.t.Fatalf("EnableMFADevice(%s, %s): %v", user, dev.SerialNumber, err)
	}
	e.nextStep()
	return seed, dev.SerialNumber
}

func wantCode(t testing.TB, err error, code api.Code) {
	t.Helper()
	if !api.IsCode(err, code) {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// trustDoc is a trust policy letting principal assume the role, under an
// optional condition block.
func trustDoc(principal, condition string) string {
	if condition != "" {
		condition = `, "Condition": ` + condition
	}
	return `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "` + principal + `"}, "Action": "sts:AssumeRole"` + condition + `}]}`
}

const mfaCondition = `{"Bool": {"aws:MultiFactorAuthPresent": "true"}}`
