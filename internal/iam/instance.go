package iam

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// Instance role sessions. An instance launched with a profile gets
// sessions of the profile's role named after the instance (the caller
// ARN is arn:azote:sts::ACCOUNT:assumed-role/ROLE/i-…, as EC2's), minted
// here and delivered by the net card's metadata service. A session token
// is sealed and needs no storage, so ending the sessions of a stopped
// instance takes a record that outlives azoted: the instance's live
// generation, in tInstanceSessions. Each launch gets a new random
// generation (ActivateInstanceCredentials); a session carries the one it
// was minted under and is valid only while the instance's record holds
// that same generation. Stop and terminate delete the record
// (RevokeInstanceCredentials): every session of that launch fails from
// the next request on, on this host and after any restart, and no later
// launch brings them back.

// InstanceCredentialLifetime is how long an instance's role session
// lasts by default (EC2's last hours; they are refreshed well before the
// end). Tests shorten it; azoted's --instance-credential-lifetime (for
// e2e tests) sets a service's own (SetInstanceCredentialLifetime).
var InstanceCredentialLifetime = time.Hour

// MinInstanceCredentialLifetime is the shortest lifetime
// SetInstanceCredentialLifetime takes: a refresh must have time to
// reach the guest.
const MinInstanceCredentialLifetime = 2 * time.Second

// SetInstanceCredentialLifetime sets how long the instance role sessions
// this service mints last (0: InstanceCredentialLifetime).
func (s *Service) SetInstanceCredentialLifetime(d time.Duration) error {
	if d != 0 && (d < MinInstanceCredentialLifetime || d > MaxSessionDuration) {
		return fmt.Errorf("instance credential lifetime %v: between %v and %v", d, MinInstanceCredentialLifetime, MaxSessionDuration)
	}
	s.instanceLifetime.Store(int64(d))
	return nil
}

// InstanceLifetime is how long the instance role sessions this service
// mints last.
func (s *Service) InstanceLifetime() time.Duration {
	if d := time.Duration(s.instanceLifetime.Load()); d != 0 {
		return d
	}
	return InstanceCredentialLifetime
}

// tInstanceSessions holds the live generation of each instance that may
// hold role sessions, by instance id.
const tInstanceSessions = "iam-instance-sessions"

// instanceSessions is one instance's entry in tInstanceSessions.
type instanceSessions struct {
	Generation uint64 `json:"generation"`
}

// ActivateInstanceCredentials starts a new generation of role sessions
// for instanceID, at each launch: sessions of an earlier launch stay
// invalid.
func (s *Service) ActivateInstanceCredentials(instanceID string) error {
	if err := checkName("instance", instanceID); err != nil {
		return err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	gen := binary.BigEndian.Uint64(b[:]) | 1 // never 0: 0 is "no instance"
	return s.update(func(tx store.Tx) error {
		return tx.Put(tInstanceSessions, instanceID, instanceSessions{Generation: gen})
	})
}

// RevokeInstanceCredentials ends every role session of instanceID, at
// stop and terminate. Revoking an instance that has none is not an
// error.
func (s *Service) RevokeInstanceCredentials(instanceID string) error {
	return s.update(func(tx store.Tx) error {
		err := tx.Delete(tInstanceSessions, instanceID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
}

// instanceGeneration is the live generation of instanceID, 0 when it
// has none.
func (s *Service) instanceGeneration(instanceID string) (uint64, error) {
	var e instanceSessions
	err := s.st.View(func(tx store.Tx) error { return tx.Get(tInstanceSessions, instanceID, &e) })
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return e.Generation, err
}

// InstanceCredentials mints a session of the role of instance profile
// profileARN for instance instanceID, for InstanceLifetime. The
// profile is read again, as STS reads a role at every AssumeRole: it must
// still exist and hold a role that trusts the compute service. The role
// and the profile are returned for the metadata service (iam/info). An
// instance whose sessions are not active (never launched, stopped,
// terminated) is refused IncorrectInstanceState.
func (s *Service) InstanceCredentials(profileARN, instanceID string) (api.Credentials, api.Role, api.InstanceProfile, error) {
	if err := checkName("role session", instanceID); err != nil {
		return api.Credentials{}, api.Role{}, api.InstanceProfile{}, err
	}
	gen, err := s.instanceGeneration(instanceID)
	if err != nil {
		return api.Credentials{}, api.Role{}, api.InstanceProfile{}, err
	}
	if gen == 0 {
		return api.Credentials{}, api.Role{}, api.InstanceProfile{}, api.Errorf(api.CodeIncorrectInstanceState, "instance %s is not running: it has no role sessions", instanceID)
	}
	p, err := s.InstanceProfileForLaunch(profileARN)
	if err != nil {
		return api.Credentials{}, api.Role{}, p, err
	}
	role := p.Roles[0]
	// The end is on a whole second: the metadata service shows it so
	// (2006-01-02T15:04:05Z), and a client that refreshes by what it is
	// shown must not hold a session past its real end.
	now := s.now().UTC()
	creds, err := s.sealSession(session{Type: api.PrincipalAssumedRole, ARN: s.arn("sts", "assumed-role/"+role.RoleName+"/"+instanceID),
		PrincipalID: role.RoleID + ":" + instanceID, UserName: instanceID,
		IssuerARN: role.ARN, IssuerType: "Role", IssuerName: role.RoleName, Created: now, Expiry: now.Add(s.InstanceLifetime()).Truncate(time.Second),
		InstanceID: instanceID, InstanceGen: gen})
	if err != nil {
		return api.Credentials{}, api.Role{}, p, err
	}
	return creds, role, p, nil
}
