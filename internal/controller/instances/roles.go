package instances

import (
	"errors"
	"sync"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
)

// Instance roles. An instance launched with an instance profile gets
// sessions of the profile's role, minted by the IAM and handed to its
// net cards (NetState.Metadata.Role), whose metadata service serves them
// to the guest. Their life follows the instance's machine:
//
//	launch     → roleStart: the IAM starts a new generation of sessions
//	             for the instance (the last launch's stay dead)
//	card start → roleCredentials mints the first session (metadata)
//	running    → refreshRole (one goroutine per instance) mints a new
//	             session and pushes it to the cards before the current one
//	             has less than refreshWindow left
//	exit       → roleEnd: the refresher ends, the IAM revokes every
//	             session of the launch, the cache is dropped
//
// Sessions are cached here, in memory only: never in the store or on
// disk. An azoted that restarts mints new ones for the instances it
// adopts (their generation is unchanged, so what the cards hold stays
// valid meanwhile).

// Roles is what the instances service needs of the IAM for instance
// roles (iam.Service implements it).
type Roles interface {
	// InstanceProfileForLaunch resolves and checks a profile for a
	// launch that was not resolved by the gateway.
	InstanceProfileForLaunch(ref string) (api.InstanceProfile, error)
	// ActivateInstanceCredentials starts a launch's generation of
	// sessions; RevokeInstanceCredentials ends it.
	ActivateInstanceCredentials(instanceID string) error
	RevokeInstanceCredentials(instanceID string) error
	// InstanceCredentials mints a session of the profile's role for the
	// instance.
	InstanceCredentials(profileARN, instanceID string) (api.Credentials, api.Role, api.InstanceProfile, error)
	// InstanceLifetime is how long the sessions it mints last.
	InstanceLifetime() time.Duration
}

// roleKeeper holds the current role session of each running instance
// with a profile, and the refresher that keeps it fresh.
type roleKeeper struct {
	wg sync.WaitGroup // refreshers

	mu     sync.Mutex
	byID   map[string]*instanceRole
	closed bool
	// pushed, set by tests, is told of each session pushed to the cards.
	pushed func(instanceID string, c *cardproto.NetRoleCredentials)
}

// instanceRole is one instance's session and refresher.
type instanceRole struct {
	profileARN, profileID string
	creds                 *cardproto.NetRoleCredentials // nil until minted
	expiry                time.Time
	// stop ends the refresher (nil when none runs).
	stop chan struct{}
}

// refreshWindow is how much validity a session may have left before it
// is replaced: 15 minutes for sessions of an hour or more (EC2 leaves
// at least 5 minutes at all times; so does this, with room for a push
// that must be retried), a quarter of shorter ones (tests).
func refreshWindow(lifetime time.Duration) time.Duration {
	if lifetime >= time.Hour {
		return 15 * time.Minute
	}
	return lifetime / 4
}

// credentialTime is how the metadata service writes times (EC2's).
const credentialTime = "2006-01-02T15:04:05Z"

// roleCredentials is the current role session of rec's instance for its
// net cards: nil without a profile; minted when there is none or when it
// has less than refreshWindow left. A session that cannot be minted
// (the profile lost its role, the role no longer trusts the compute
// service, the instance is not running) is logged and answered nil, as
// EC2's metadata service then serves no credentials: the instance's
// network must not depend on its role. Only a failure of azoted itself
// is an error.
func (s *Service) roleCredentials(rec instanceRecord) (*cardproto.NetRoleCredentials, error) {
	if rec.IAMInstanceProfile == "" || s.cfg.Roles == nil {
		return nil, nil
	}
	k := &s.roleState
	k.mu.Lock()
	defer k.mu.Unlock()
	ir := k.byID[rec.ID]
	if ir == nil {
		// Not launched by this azoted, or already ended: nothing is
		// minted for an instance whose sessions are not live here.
		return nil, nil
	}
	now := time.Now()
	lifetime := s.roleLifetime()
	if ir.creds != nil && now.Before(ir.expiry.Add(-refreshWindow(lifetime))) {
		return ir.creds, nil
	}
	err := s.mintLocked(rec.ID, ir)
	switch {
	case err == nil:
		return ir.creds, nil
	case isRefusal(err):
		s.log.Warn("no role credentials for an instance", "id", rec.ID, "profile", rec.IAMInstanceProfile, "err", err)
		if ir.creds != nil && now.Before(ir.expiry) {
			return ir.creds, nil // still valid: kept until a mint succeeds
		}
		return nil, nil
	}
	return nil, err
}

// roleLifetime is how long the sessions the IAM mints last.
func (s *Service) roleLifetime() time.Duration { return s.cfg.Roles.InstanceLifetime() }

// isRefusal tells a refusal of the IAM (an API error: no such profile,
// no role, an instance whose sessions are not live) from a failure.
func isRefusal(err error) bool {
	var e *api.Error
	return errors.As(err, &e) || errors.Is(err, errProfileReplaced)
}

// errProfileReplaced: the profile was deleted and made again under its
// name since the launch; the new one is not the one that was authorised.
var errProfileReplaced = errors.New("the instance profile was replaced since the launch")

// mintLocked mints a new session for instance id into ir. k.mu held.
func (s *Service) mintLocked(id string, ir *instanceRole) error {
	cr, role, p, err := s.cfg.Roles.InstanceCredentials(ir.profileARN, id)
	if err != nil {
		return err
	}
	if ir.profileID != "" && p.InstanceProfileID != ir.profileID {
		return errProfileReplaced
	}
	ir.creds = &cardproto.NetRoleCredentials{
		InstanceProfileARN: p.ARN, InstanceProfileID: p.InstanceProfileID, RoleName: role.RoleName,
		AccessKeyID: cr.AccessKeyID, SecretAccessKey: cr.SecretAccessKey, Token: cr.SessionToken,
		Expiration: cr.Expiration.UTC().Format(credentialTime), LastUpdated: time.Now().UTC().Format(credentialTime),
	}
	ir.expiry = cr.Expiration
	return nil
}

// checkLaunchProfile resolves the profile of a launch: the one the
// gateway resolved and authorised (iam:PassRole on its role), or, for a
// launch that did not come through the gateway, the one its name or ARN
// names now.
func (s *Service) checkLaunchProfile(req api.RunInstanceRequest) (*api.InstanceProfile, error) {
	if req.IAMInstanceProfile == "" {
		return nil, nil
	}
	if s.cfg.Roles == nil {
		return nil, api.Errorf(api.CodeInvalidParameter, "this azoted has no instance profiles")
	}
	if p := req.InstanceProfile; p != nil {
		return p, nil
	}
	p, err := s.cfg.Roles.InstanceProfileForLaunch(req.IAMInstanceProfile)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// roleStart starts a new generation of role sessions for rec's launch
// and makes its instance known here, so that its cards can be given a
// session as they start.
func (s *Service) roleStart(rec instanceRecord) error {
	if rec.IAMInstanceProfile == "" || s.cfg.Roles == nil {
		return nil
	}
	if err := s.cfg.Roles.ActivateInstanceCredentials(rec.ID); err != nil {
		return err
	}
	s.roleAdopt(rec)
	return nil
}

// roleAdopt makes rec's instance known here without a new generation:
// an instance adopted after a restart keeps the sessions it holds until
// the refresher replaces them.
func (s *Service) roleAdopt(rec instanceRecord) {
	if rec.IAMInstanceProfile == "" || s.cfg.Roles == nil {
		return
	}
	k := &s.roleState
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byID == nil {
		k.byID = map[string]*instanceRole{}
	}
	if k.byID[rec.ID] == nil {
		k.byID[rec.ID] = &instanceRole{profileARN: rec.IAMInstanceProfile, profileID: rec.InstanceProfileID}
	}
}

// roleRefresh starts the refresher of instance id, which must be known
// (roleStart, roleAdopt); it runs until roleEnd or Close.
func (s *Service) roleRefresh(id string) {
	k := &s.roleState
	k.mu.Lock()
	defer k.mu.Unlock()
	ir := k.byID[id]
	if ir == nil || ir.stop != nil || k.closed {
		return
	}
	ir.stop = make(chan struct{})
	k.wg.Add(1)
	go s.refreshRole(id, ir.stop)
}

// refreshRole keeps instance id's session fresh: it sleeps until the
// session is due (refreshWindow before its end), mints a new one and
// pushes it to the instance's net cards. A failed mint or push is tried
// again soon, while the current session still has most of its window.
func (s *Service) refreshRole(id string, stop chan struct{}) {
	k := &s.roleState
	defer k.wg.Done()
	for {
		wait := s.refreshRoleOnce(id)
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refreshRoleOnce mints and pushes instance id's session when it is due,
// and says how long to wait before the next look.
func (s *Service) refreshRoleOnce(id string) time.Duration {
	window := refreshWindow(s.roleLifetime())
	retry := max(window/8, 50*time.Millisecond)
	rec, err := s.get(id)
	if err != nil {
		return retry
	}
	k := &s.roleState
	k.mu.Lock()
	ir := k.byID[id]
	if ir == nil {
		k.mu.Unlock()
		return retry
	}
	due := ir.creds == nil || !time.Now().Before(ir.expiry.Add(-window))
	k.mu.Unlock()
	if !due {
		k.mu.Lock()
		wait := time.Until(ir.expiry.Add(-window))
		k.mu.Unlock()
		return max(wait, time.Millisecond)
	}
	creds, err := s.roleCredentials(rec)
	if err != nil || creds == nil {
		if err != nil {
			s.log.Warn("refreshing an instance's role credentials", "id", id, "err", err)
		}
		return retry
	}
	if err := s.pushRole(id); err != nil {
		s.log.Warn("pushing an instance's role credentials to its cards", "id", id, "err", err)
		return retry
	}
	k.mu.Lock()
	hook := k.pushed
	wait := max(time.Until(ir.expiry.Add(-window)), time.Millisecond)
	k.mu.Unlock()
	if hook != nil {
		hook(id, creds)
	}
	return wait
}

// pushRole pushes the whole state of each net card of instance id, which
// carries its metadata and so the current role session (netState).
func (s *Service) pushRole(id string) error {
	s.mu.Lock()
	rt := s.runtimes[id]
	s.mu.Unlock()
	if rt == nil {
		return nil
	}
	rt.mu.Lock()
	set := rt.cards
	rt.mu.Unlock()
	if set == nil {
		return nil
	}
	set.mu.Lock()
	ncs := append([]*netCard(nil), set.nets...)
	set.mu.Unlock()
	var first error
	for _, nc := range ncs {
		if _, err := s.pushCard(nc); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// roleEnd ends instance id's role sessions, at the end of its machine
// (stop, terminate, failure): the refresher stops, the IAM revokes the
// launch's generation (every session minted for it fails from the next
// request on) and the cached session is dropped. It is safe to call for
// any instance, any number of times.
func (s *Service) roleEnd(id string) {
	if s.cfg.Roles == nil {
		return
	}
	k := &s.roleState
	k.mu.Lock()
	ir := k.byID[id]
	delete(k.byID, id)
	k.mu.Unlock()
	if ir != nil && ir.stop != nil {
		close(ir.stop)
	}
	if err := s.cfg.Roles.RevokeInstanceCredentials(id); err != nil {
		s.log.Error("revoking an instance's role credentials", "id", id, "err", err)
	}
}

// roleClose stops every refresher without revoking: azoted stops, the
// instances keep running, and the next azoted refreshes them.
func (s *Service) roleClose() {
	k := &s.roleState
	k.mu.Lock()
	k.closed = true
	for _, ir := range k.byID {
		if ir.stop != nil {
			close(ir.stop)
			ir.stop = nil
		}
	}
	k.mu.Unlock()
	k.wg.Wait()
}
