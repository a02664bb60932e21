package iam

import (
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// AdminGroup is the group `azote init` makes for daily administration.
const AdminGroup = "Administrators"

// BeginInit makes (or remakes) root's MFA device before the account is
// initialised: its seed is shown once, for the operator to scan.
func (s *Service) BeginInit() (NewVirtualMFADevice, error) {
	a, err := s.Account()
	if err != nil {
		return NewVirtualMFADevice{}, err
	}
	if a.Initialized {
		return NewVirtualMFADevice{}, api.Errorf(api.CodeAccountAlreadyInitialized, "account %s was initialised at %s", a.ID, a.InitializedAt.Format("2006-01-02 15:04:05Z"))
	}
	return s.CreateVirtualMFADevice(RootMFAName, "")
}

// InitRequest completes the bootstrap.
type InitRequest struct {
	// Two consecutive codes of root's MFA device.
	RootCode1 string `json:"RootCode1"`
	RootCode2 string `json:"RootCode2"`
	// AdminUser is the first user for daily work.
	AdminUser string `json:"AdminUser"`
}

// InitResponse carries the admin's first access key, shown once.
type InitResponse struct {
	AccountID string       `json:"AccountId"`
	RootMFA   string       `json:"RootMFASerial"`
	Admin     User         `json:"Admin"`
	AccessKey NewAccessKey `json:"AccessKey"`
}

// Init enables root's MFA device, creates the Administrators group
// (AdministratorAccess plus the MFA requirement for dangerous actions)
// and the first admin user with an access key, and marks the account
// initialised. Root has no access keys and never gets one; from now on
// root acts only through MFA sessions.
func (s *Service) Init(r InitRequest) (InitResponse, error) {
	a, err := s.Account()
	if err != nil {
		return InitResponse{}, err
	}
	if a.Initialized {
		return InitResponse{}, api.Errorf(api.CodeAccountAlreadyInitialized, "account %s is already initialised", a.ID)
	}
	if err := checkName("user", r.AdminUser); err != nil {
		return InitResponse{}, err
	}
	serial := s.arn("iam", "mfa/"+RootMFAName)
	if err := s.EnableMFADevice("", serial, r.RootCode1, r.RootCode2); err != nil {
		return InitResponse{}, err
	}
	// Whatever fails below leaves root's MFA enabled and the account not
	// initialised; Init can be run again with two new codes only if the
	// device is remade, so undo the enable on failure.
	fail := func(err error) (InitResponse, error) {
		s.update(func(tx store.Tx) error {
			var rec mfaRecord
			if tx.Get(tMFA, serial, &rec) == nil {
				rec.Enabled = false
				tx.Put(tMFA, serial, rec)
			}
			return nil
		})
		return InitResponse{}, err
	}
	if _, err := s.GetPolicy(RequireMFAPolicy); err != nil {
		if _, err := s.CreatePolicy(RequireMFAPolicy, requireMFADocument); err != nil {
			return fail(err)
		}
	}
	if _, _, err := s.GetGroup(AdminGroup); err != nil {
		if _, err := s.CreateGroup(AdminGroup); err != nil {
			return fail(err)
		}
	}
	for _, p := range []string{BuiltinARN("AdministratorAccess"), s.policyARN(RequireMFAPolicy)} {
		if err := s.AttachPolicy(KindGroup, AdminGroup, p); err != nil {
			return fail(err)
		}
	}
	u, err := s.CreateUser(r.AdminUser)
	if err != nil {
		return fail(err)
	}
	if err := s.AddUserToGroup(u.UserName, AdminGroup); err != nil {
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
	return InitResponse{AccountID: a.ID, RootMFA: serial, Admin: u, AccessKey: key}, nil
}
