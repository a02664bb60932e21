package instances

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/iam"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
)

// roleIAM is a real IAM on a store of its own, with profile web holding
// role app (which trusts the compute service) and an empty profile.
func roleIAM(t *testing.T, lifetime time.Duration) *iam.Service {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	w, err := keys.NewHost(key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "iam.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := iam.Open(st, w, "local", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.SetInstanceCredentialLifetime(lifetime); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateRole("app", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "compute.azote"}, "Action": "sts:AssumeRole"}]}`, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"web", "empty"} {
		if _, err := svc.CreateInstanceProfile(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.AddRoleToInstanceProfile("web", "app"); err != nil {
		t.Fatal(err)
	}
	return svc
}

// setPushHook has s tell hook of each session its refreshers push.
func setPushHook(s *Service, hook func(string, *cardproto.NetRoleCredentials)) {
	s.roleState.mu.Lock()
	s.roleState.pushed = hook
	s.roleState.mu.Unlock()
}

// pushLog records the sessions the refresher pushed, and when.
type pushLog struct {
	mu     sync.Mutex
	pushes []pushed
}

type pushed struct {
	at    time.Time
	id    string
	creds cardproto.NetRoleCredentials
}

func (l *pushLog) record(id string, c *cardproto.NetRoleCredentials) {
	l.mu.Lock()
	l.pushes = append(l.pushes, pushed{time.Now(), id, *c})
	l.mu.Unlock()
}

func (l *pushLog) all() []pushed {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]pushed(nil), l.pushes...)
}

// waitPushes waits until n sessions were pushed.
func (l *pushLog) waitPushes(t *testing.T, n int, within time.Duration) []pushed {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if ps := l.all(); len(ps) >= n {
			return ps
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%d sessions pushed in %v, want %d", len(l.all()), within, n)
	return nil
}

// valid tells whether the IAM takes c now.
func valid(svc *iam.Service, c cardproto.NetRoleCredentials) error {
	secret, active, _, err := svc.Credentials(c.AccessKeyID, c.Token)
	if err == nil && (!active || secret != c.SecretAccessKey) {
		err = errors.New("wrong secret or inactive")
	}
	return err
}

func parseExpiry(t *testing.T, c cardproto.NetRoleCredentials) time.Time {
	t.Helper()
	at, err := time.Parse(credentialTime, c.Expiration)
	if err != nil {
		t.Fatalf("expiration %q: %v", c.Expiration, err)
	}
	return at
}

// TestRoleRefreshAndRevoke: an instance launched with a profile gets
// sessions of its role, replaced well before they end (never a moment
// without a valid one), which end when it stops; a start brings new ones
// and terminate ends them for good.
func TestRoleRefreshAndRevoke(t *testing.T) {
	const lifetime = 2 * time.Second // refreshed 500 ms before the end
	svc := roleIAM(t, lifetime)
	fx := newFixtureOf(t, &fixture{roles: svc})
	var log pushLog
	setPushHook(fx.s, log.record)
	ctx := context.Background()

	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "app", Image: "default", VCPUs: 1, MemoryMiB: 64, IAMInstanceProfile: "web"})
	if err != nil {
		t.Fatal(err)
	}
	profile, _ := svc.GetInstanceProfile("web")
	if inst.IAMInstanceProfile != profile.ARN {
		t.Fatalf("instance profile %q, want %q", inst.IAMInstanceProfile, profile.ARN)
	}
	fx.waitState(inst.ID, api.StateRunning)

	ps := log.waitPushes(t, 4, 10*time.Second)
	for i, p := range ps {
		c := p.creds
		if p.id != inst.ID || c.RoleName != "app" || c.InstanceProfileARN != profile.ARN || c.InstanceProfileID != profile.InstanceProfileID {
			t.Fatalf("push %d: %+v", i, c)
		}
		exp := parseExpiry(t, c)
		if left := exp.Sub(p.at); left < lifetime/4-100*time.Millisecond {
			t.Errorf("push %d: only %v left when pushed", i, left)
		}
		if i > 0 {
			// The one it replaces still had time left: the guest never
			// holds expired credentials.
			prev := parseExpiry(t, ps[i-1].creds)
			if !p.at.Before(prev) {
				t.Errorf("push %d at %v, after the previous session ended at %v", i, p.at, prev)
			}
			if c.AccessKeyID == ps[i-1].creds.AccessKeyID {
				t.Errorf("push %d did not replace the session", i)
			}
		}
	}
	last := ps[len(ps)-1].creds
	if err := valid(svc, last); err != nil {
		t.Fatalf("the current session: %v", err)
	}
	// roleCredentials (what the metadata service is given) answers the
	// cached session, not a new one each time.
	rec, _ := fx.s.get(inst.ID)
	a, err := fx.s.roleCredentials(rec)
	if err != nil || a == nil {
		t.Fatalf("roleCredentials: %v %v", a, err)
	}
	b, _ := fx.s.roleCredentials(rec)
	if a.AccessKeyID != b.AccessKeyID {
		t.Error("roleCredentials minted twice within the session's life")
	}

	if _, err := fx.s.Stop(ctx, inst.ID, api.StopInstanceRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	fx.waitState(inst.ID, api.StateStopped)
	if err := valid(svc, *b); !errors.Is(err, iam.ErrExpiredToken) {
		t.Fatalf("a stopped instance's session: %v, want ErrExpiredToken", err)
	}
	if c, err := fx.s.roleCredentials(rec); c != nil || err != nil {
		t.Fatalf("roleCredentials of a stopped instance: %+v %v", c, err)
	}
	n := len(log.all())
	time.Sleep(lifetime)
	if m := len(log.all()); m != n {
		t.Fatalf("%d sessions pushed after the stop", m-n)
	}

	if _, err := fx.s.Start(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	ps = log.waitPushes(t, n+1, 5*time.Second)
	fresh := ps[len(ps)-1].creds
	if err := valid(svc, fresh); err != nil {
		t.Fatalf("a session of the new launch: %v", err)
	}
	if err := valid(svc, *b); !errors.Is(err, iam.ErrExpiredToken) {
		t.Fatalf("the last launch's session after a start: %v, want ErrExpiredToken", err)
	}

	if _, err := fx.s.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := valid(svc, fresh); !errors.Is(err, iam.ErrExpiredToken) {
		t.Fatalf("a terminated instance's session: %v, want ErrExpiredToken", err)
	}
}

// TestRoleAdoptedAfterRestart: an azoted that restarts keeps the
// sessions its instances hold valid (their launch goes on) and refreshes
// them; a stop while it was down ends them.
func TestRoleAdoptedAfterRestart(t *testing.T) {
	svc := roleIAM(t, 4*time.Second)
	fx := newFixtureOf(t, &fixture{roles: svc})
	var log pushLog
	setPushHook(fx.s, log.record)
	ctx := context.Background()
	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "app", Image: "default", VCPUs: 1, MemoryMiB: 64, IAMInstanceProfile: "web"})
	if err != nil {
		t.Fatal(err)
	}
	before := log.waitPushes(t, 1, 5*time.Second)[0].creds

	fx.close()
	fx.start()
	var after pushLog
	setPushHook(fx.s, after.record)
	// The adopted instance's refresher runs already: it was started by
	// Repair, before the hook was set; the next refresh is seen.
	ps := after.waitPushes(t, 1, 10*time.Second)
	if err := valid(svc, before); err != nil && time.Now().Before(parseExpiry(t, before)) {
		t.Fatalf("a session from before the restart: %v", err)
	}
	if err := valid(svc, ps[0].creds); err != nil {
		t.Fatalf("a session minted after the restart: %v", err)
	}
	if _, err := fx.s.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := valid(svc, ps[0].creds); !errors.Is(err, iam.ErrExpiredToken) {
		t.Fatalf("after terminate: %v, want ErrExpiredToken", err)
	}
}

// TestRoleLaunchRefusals: a launch with a profile that does not exist,
// has no role, or with no IAM at all is refused and leaves nothing.
func TestRoleLaunchRefusals(t *testing.T) {
	svc := roleIAM(t, 0)
	fx := newFixtureOf(t, &fixture{roles: svc})
	ctx := context.Background()
	for _, tc := range []struct {
		profile string
		code    api.Code
	}{
		{"nope", api.CodeNoSuchEntity},
		{"empty", api.CodeInvalidParameter},
		{"arn:azote:iam::999999999999:instance-profile/web", api.CodeInvalidParameter},
	} {
		_, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "app", Image: "default", VCPUs: 1, MemoryMiB: 64, IAMInstanceProfile: tc.profile})
		if !api.IsCode(err, tc.code) {
			t.Errorf("%s: %v, want %s", tc.profile, err, tc.code)
		}
	}
	if l, _ := fx.s.List(ctx); len(l) != 0 || len(fx.dirs()) != 0 {
		t.Fatalf("refused launches left %d instances, dirs %v", len(l), fx.dirs())
	}

	bare := newFixture(t)
	_, err := bare.s.Run(ctx, api.RunInstanceRequest{Name: "app", Image: "default", VCPUs: 1, MemoryMiB: 64, IAMInstanceProfile: "web"})
	if !api.IsCode(err, api.CodeInvalidParameter) || !strings.Contains(err.Error(), "no instance profiles") {
		t.Fatalf("without an IAM: %v", err)
	}
}
