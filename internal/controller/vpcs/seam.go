package vpcs

import (
	"errors"
	"fmt"
	"slices"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// The instance owner's seam, each call one transaction of this package's
// store. The instance records live in azoted's own store, which may not
// be this one (a fleet shares its network records, not its instances),
// so an instance and its interfaces never change in one transaction: the
// instance owner changes the interfaces here first, its record second,
// and undoes the first when the second fails. What a crash leaves in
// between, an interface attached on this host to an instance this host
// does not run, OrphansHere finds and EndInstance ends.

// CreateAttached makes the primary interface of a launch (CreateInterfaceTx
// with att) in its own transaction.
func (s *Service) CreateAttached(req api.CreateNetworkInterfaceRequest, att api.NetworkInterfaceAttachment) (InterfaceRecord, error) {
	var n InterfaceRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		n, err = s.CreateInterfaceTx(tx, req, &att)
		return n.VPCID, err
	})
	if err == nil {
		s.log.Info("network interface created", "id", n.ID, "subnet", n.SubnetID, "ip", n.PrivateIP, "mac", n.MAC, "instance", att.InstanceID)
	}
	return n, err
}

// Attach is AttachTx in its own transaction.
func (s *Service) Attach(ref, instID string, idx *int) (InterfaceRecord, error) {
	var n InterfaceRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		n, err = s.AttachTx(tx, ref, instID, idx)
		return n.VPCID, err
	})
	return n, err
}

// Detach is DetachTx in its own transaction.
func (s *Service) Detach(ref, instID string) (InterfaceRecord, error) {
	var n InterfaceRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		n, err = DetachTx(tx, ref, instID)
		return n.VPCID, err
	})
	return n, err
}

// EndInterface is EndTx in its own transaction: the undoing of a
// CreateAttached or an Attach whose instance record could not follow.
func (s *Service) EndInterface(id, instID string) error {
	return s.update(func(tx store.Tx) (string, error) { return EndTx(tx, id, instID) })
}

// EndInstance ends every interface attached to instance instID (EndTx):
// at its termination, or when its launch is undone. Ending an instance
// that has none is no change.
func (s *Service) EndInstance(instID string) error {
	var ended []string
	err := s.db.Update(func(tx store.Tx) error {
		ended = ended[:0]
		ns, err := InstanceInterfacesTx(tx, instID)
		if err != nil {
			return err
		}
		for _, n := range ns {
			vpcID, err := EndTx(tx, n.ID, instID)
			if err != nil {
				return err
			}
			ended = append(ended, vpcID)
		}
		return nil
	})
	if err == nil {
		s.Changed(ended...)
	}
	return err
}

// OrphansHere returns the instances that interfaces are attached to on
// this host (HostID) and that alive does not know: the instance owner
// passes the instances it has, and ends the interfaces of the others
// (EndInstance). The interfaces of other hosts are never its to end.
func (s *Service) OrphansHere(alive func(instID string) bool) ([]string, error) {
	var attached []string
	err := s.view(func(tx store.Tx) error {
		all, err := allInterfacesTx(tx)
		for _, n := range all {
			if n.Host == s.cfg.HostID && n.Attachment != nil {
				attached = append(attached, n.Attachment.InstanceID)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range attached {
		if !slices.Contains(out, id) && !alive(id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// HostTable holds one record per host of the fleet, by HostID: the
// secret of the azoted (its state directory) that claimed the id.
const HostTable = "hosts"

type hostRecord struct {
	Token string `json:"token"`
}

// ErrHostIDTaken: another azoted of the fleet has claimed this host id.
var ErrHostIDTaken = errors.New("vpcs: host id taken by another azoted")

// ClaimHost claims HostID in the shared store for the azoted that holds
// token (a secret kept in its state directory), or checks that it holds
// the claim already. Two hosts with one id would take each other's
// interfaces for their own: the second is refused at start-up.
func (s *Service) ClaimHost(token string) error {
	return s.db.Update(func(tx store.Tx) error {
		var r hostRecord
		err := tx.Get(HostTable, s.cfg.HostID, &r)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return tx.Create(HostTable, s.cfg.HostID, hostRecord{Token: token})
		case err != nil:
			return err
		case r.Token != token:
			return fmt.Errorf("%w: host id %q belongs to another azoted of the fleet (another state directory); give this one its own --host-name, or, if that host is gone for good, delete the key of %q in table %q of the state store", ErrHostIDTaken, s.cfg.HostID, s.cfg.HostID, HostTable)
		}
		return nil
	})
}
