package iam

import (
	"errors"
	"fmt"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/mfa"
	"github.com/azote/azote/internal/store"
)

// Issuer names azote in authenticator apps.
const Issuer = "azote"

// RootMFAName is the device name of the account root.
const RootMFAName = "root-account-mfa-device"

func seedContext(serial string) []byte { return []byte("azote-mfa-seed:" + serial) }

// CreateVirtualMFADevice makes a device (not yet enabled) for user, or
// for root when user is "".
func (s *Service) CreateVirtualMFADevice(name, user string) (api.NewVirtualMFADevice, error) {
	if err := checkName("MFA device", name); err != nil {
		return api.NewVirtualMFADevice{}, err
	}
	seed, err := mfa.NewSecret()
	if err != nil {
		return api.NewVirtualMFADevice{}, err
	}
	defer clear(seed)
	serial := s.arn("iam", "mfa/"+name)
	sealed, err := s.seal.Wrap(seed, seedContext(serial))
	if err != nil {
		return api.NewVirtualMFADevice{}, err
	}
	rec := mfaRecord{Serial: serial, Name: name, UserName: user, CreatedAt: s.now().UTC(), Sealed: sealed}
	err = s.update(func(tx store.Tx) error {
		if user != "" {
			if _, err := s.getUserTx(tx, user); err != nil {
				return err
			}
		}
		var old mfaRecord
		if err := tx.Get(tMFA, serial, &old); err == nil {
			if old.Enabled || old.UserName != user {
				return exists("MFA device", name)
			}
			// A device that was never enabled may be made again
			// (the user lost the first QR code before enrolling).
		}
		return tx.Put(tMFA, serial, rec)
	})
	if err != nil {
		return api.NewVirtualMFADevice{}, err
	}
	account := user
	if account == "" {
		account = "root@" + s.AccountID()
	}
	uri := mfa.URI(Issuer, account, seed)
	qr, err := mfa.QR(uri)
	if err != nil {
		qr = ""
	}
	return api.NewVirtualMFADevice{SerialNumber: serial, Base32StringSeed: mfa.EncodeSecret(seed), URI: uri, QRCode: qr}, nil
}

func (s *Service) getMFATx(tx store.Tx, serial string) (mfaRecord, error) {
	return getTx[mfaRecord](tx, tMFA, "MFA device", serial)
}

// withDevice loads a device with its seed, runs fn on it and stores the
// new replay and lockout state, all under mfaMu and in one transaction:
// two requests can never both spend one code.
func (s *Service) withDevice(serial string, fn func(tx store.Tx, rec *mfaRecord, d *mfa.Device) error) error {
	s.mfaMu.Lock()
	defer s.mfaMu.Unlock()
	var verr error
	err := s.update(func(tx store.Tx) error {
		rec, err := s.getMFATx(tx, serial)
		if err != nil {
			return err
		}
		seed, err := s.seal.Unwrap(rec.Sealed, seedContext(serial))
		if err != nil {
			return fmt.Errorf("iam: MFA seed of %s: %w", serial, err)
		}
		defer clear(seed)
		d := mfa.Device{Secret: seed, LastCounter: rec.LastCounter, Failures: rec.Failures, LockedUntil: rec.LockedUntil, Enabled: rec.Enabled}
		// A wrong code must still be counted, so the state is stored
		// whatever fn says, and fn's verdict returned afterwards.
		verr = fn(tx, &rec, &d)
		rec.LastCounter, rec.Failures, rec.LockedUntil, rec.Enabled = d.LastCounter, d.Failures, d.LockedUntil, d.Enabled
		return tx.Put(tMFA, serial, rec)
	})
	if err != nil {
		return err
	}
	return mfaError(verr)
}

func mfaError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mfa.ErrLocked):
		return api.Errorf(api.CodeMFALocked, "MFA device locked after %d failed codes; try again in %v", mfa.MaxFailures, mfa.LockoutDuration)
	case errors.Is(err, mfa.ErrReplayed):
		return api.Errorf(api.CodeInvalidAuthenticationCode, "MFA code already used")
	case errors.Is(err, mfa.ErrInvalidCode), errors.Is(err, mfa.ErrNotConsecutive):
		return api.Errorf(api.CodeInvalidAuthenticationCode, "MFA code is not valid")
	case errors.Is(err, mfa.ErrNotEnabled):
		return api.Errorf(api.CodeInvalidAuthenticationCode, "MFA device is not enabled")
	case errors.Is(err, mfa.ErrAlreadyEnabled):
		return api.Errorf(api.CodeEntityAlreadyExists, "MFA device is already enabled")
	}
	return err
}

// EnableMFADevice enrols a device with two consecutive codes and binds it
// to user ("" = root). A user has at most one device.
func (s *Service) EnableMFADevice(user, serial, code1, code2 string) error {
	return s.withDevice(serial, func(tx store.Tx, rec *mfaRecord, d *mfa.Device) error {
		if rec.UserName != user {
			return notFound("MFA device", serial+" of "+displayUser(user))
		}
		if user != "" {
			u, err := s.getUserTx(tx, user)
			if err != nil {
				return err
			}
			if u.MFASerial != "" && u.MFASerial != serial {
				return api.Errorf(api.CodeLimitExceeded, "user %s already has MFA device %s; deactivate it first", user, u.MFASerial)
			}
			if err := d.Enable(code1, code2, s.now()); err != nil {
				return err
			}
			u.MFASerial = serial
			rec.EnabledAt = s.now().UTC()
			return tx.Put(tUsers, user, u)
		}
		if err := d.Enable(code1, code2, s.now()); err != nil {
			return err
		}
		rec.EnabledAt = s.now().UTC()
		return nil
	})
}

func displayUser(u string) string {
	if u == "" {
		return "root"
	}
	return u
}

// DeactivateMFADevice unbinds a user's device and deletes it.
func (s *Service) DeactivateMFADevice(user, serial string) error {
	return s.update(func(tx store.Tx) error {
		rec, err := s.getMFATx(tx, serial)
		if err != nil {
			return err
		}
		if user == "" || rec.UserName != user {
			return notFound("MFA device", serial+" of "+displayUser(user))
		}
		u, err := s.getUserTx(tx, user)
		if err != nil {
			return err
		}
		u.MFASerial = ""
		if err := tx.Put(tUsers, user, u); err != nil {
			return err
		}
		return tx.Delete(tMFA, serial)
	})
}

// ListMFADevices lists devices, of one user when user is set.
func (s *Service) ListMFADevices(user string) ([]api.MFADevice, error) {
	var out []api.MFADevice
	err := s.st.View(func(tx store.Tx) error {
		recs, err := store.All[mfaRecord](tx, tMFA)
		for _, r := range recs {
			if user != "" && r.UserName != user {
				continue
			}
			out = append(out, api.MFADevice{SerialNumber: r.Serial, UserName: r.UserName, CreatedAt: r.CreatedAt, EnableDate: r.EnabledAt, Enabled: r.Enabled})
		}
		return err
	})
	return out, err
}

// verifyMFA checks a code of the enabled device serial owned by user
// ("" = root) and spends it.
func (s *Service) verifyMFA(user, serial, code string) (time.Time, error) {
	err := s.withDevice(serial, func(_ store.Tx, rec *mfaRecord, d *mfa.Device) error {
		if rec.UserName != user || !rec.Enabled {
			return api.Errorf(api.CodeInvalidAuthenticationCode, "MFA device %s is not an enabled device of %s", serial, displayUser(user))
		}
		return d.Verify(code, s.now())
	})
	return s.now().UTC(), err
}
