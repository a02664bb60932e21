package iam

import (
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// BeginInit makes (or remakes) root's MFA device before the account is
// initialised: its seed is shown once, for the operator to scan.
func (s *Service) BeginInit() (api.NewVirtualMFADevice, error) {
	a, err := s.Account()
	if err != nil {
		return api.NewVirtualMFADevice{}, err
	}
	if a.Initialized {
		return api.NewVirtualMFADevice{}, api.Errorf(api.CodeAccountAlreadyInitialized, "account %s was initialised at %s", a.ID, a.InitializedAt.Format("2006-01-02 15:04:05Z"))
	}
	return s.CreateVirtualMFADevice(RootMFAName, "")
}

// Init enables root's MFA device, creates the Administrators group
// (AdministratorAccess plus the MFA requirement for dangerous actions)
// and the first admin user with an access key, and marks the account
// initialised. Root has no access keys and never gets one; from now on
// root acts only through MFA sessions.
func (s *Service) Init(r api.InitRequest) (api.InitResponse, error) {
	a, err := s.Account()
	if err != nil {
		return api.InitResponse{}, err
	}
	if a.Initialized {
		return api.InitResponse{}, api.Errorf(api.CodeAccountAlreadyInitialized, "account %s is already initialised", a.ID)
	}
	if err := checkName("user", r.AdminUser); err != nil {
		return api.InitResponse{}, err
	}
	serial := s.arn("iam", "mfa/"+RootMFAName)
	if err := s.EnableMFADevice("", serial, r.RootCode1, r.RootCode2); err != nil {
		return api.InitResponse{}, err
	}
	// Whatever fails below leaves root's MFA enabled and the account not
	// initialised; Init can be run again with two new codes only if the
	// device is remade, so undo the enable on failure.
	fail := func(err error) (api.InitResponse, error) {
		s.update(func(tx store.Tx) error {
			var rec mfaRecord
			if tx.Get(tMFA, serial, &rec) == nil {
				rec.Enabled = false
				tx.Put(tMFA, serial, rec)
			}
			return nil
		})
		return api.InitResponse{}, err
	}
	if _, err := s.GetPolicy(RequireMFAPolicy); err != nil {
		if _, err := s.CreatePolicy(RequireMFAPolicy, requireMFADocument); err != nil {
			return fail(err)
		}
	}
	if _, _, err := s.GetGroup(api.AdminGroup); err != nil {
		if _, err := s.CreateGroup(api.AdminGroup); err != nil {
			return fail(err)
		}
	}
	for _, p := range []string{BuiltinARN("AdministratorAccess"), s.policyARN(RequireMFAPolicy)} {
		if err := s.AttachPolicy(KindGroup, api.AdminGroup, p); err != nil {
			return fail(err)
		}
	}
	u, err := s.CreateUser(r.AdminUser)
	if err != nil {
		return fail(err)
	}
	if err := s.AddUserToGroup(u.UserName, api.AdminGroup); err != nil {
		return fail(err)
	}
	key, err := s.CreateAccessKey(u.UserName)
	if err != nil {
		return fail(err)
	}
	err = s.update(func(tx store.Tx) error {
		var a Account
		if err := tx.Get(tAccount, "account", &a); err != nil {
			return err
		}
		a.Initialized, a.InitializedAt, a.RootMFA = true, s.now().UTC(), serial
		return tx.Put(tAccount, "account", a)
	})
	if err != nil {
		return fail(err)
	}
	u, _ = s.GetUser(u.UserName)
	return api.InitResponse{AccountID: a.ID, RootMFA: serial, Admin: u, AccessKey: key}, nil
}
