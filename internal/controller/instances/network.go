package instances

import (
	"context"
	"errors"
	"slices"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/vpcs"
)

// Network interfaces are attached here, as volumes are, under the
// instance's operation lock; a running instance gets interfaces only at
// launch (its primary one, with RunInstanceRequest.Subnet), others are
// attached while it is stopped. The attachments live in the network's
// store (vpcs), which on a fleet is shared and is not this host's own,
// so an interface and the instance's record change in two transactions:
// the interface first, then the record's copy of the instance's
// interfaces, the first undone when the second fails. The copy is read
// again from the network's store at each launch (syncInterfaces), and
// interfaces left attached to instances this host no longer runs (a
// crash between the two, an undo that could not reach the store) are
// ended by SweepInterfaces, at start-up and by azoted's janitor.

// setInterfaces records ns (by device index) as the instance's
// interfaces, and the primary one's address as its private IP.
func (r *instanceRecord) setInterfaces(ns []vpcs.InterfaceRecord) {
	r.NetworkInterfaces, r.PrivateIP = nil, ""
	for _, n := range ns {
		v := vpcs.InstanceView(n)
		r.NetworkInterfaces = append(r.NetworkInterfaces, v)
		if v.DeviceIndex == 0 {
			r.PrivateIP = v.PrivateIP
		}
	}
	slices.SortFunc(r.NetworkInterfaces, func(a, b api.InstanceNetworkInterface) int { return a.DeviceIndex - b.DeviceIndex })
}

// endInterfaces ends every interface attached to instance id (the
// primary deleted, the others detached). When the network's store cannot
// do it now, the interfaces are left to SweepInterfaces.
func (s *Service) endInterfaces(id string) {
	if s.vpcs == nil {
		return
	}
	if err := s.vpcs.EndInstance(id); err != nil {
		s.log.Warn("ending an instance's network interfaces; they are ended once the network's store can be reached", "instance", id, "err", err)
	}
}

// SweepInterfaces ends the interfaces attached on this host to instances
// it has no live record of: what a crash, or a network store that could
// not be reached, left between a change of an interface and the change
// of its instance's record. An instance being launched (it has a
// runtime, made before its interface) is live.
func (s *Service) SweepInterfaces() {
	if s.vpcs == nil {
		return
	}
	orphans, err := s.vpcs.OrphansHere(func(id string) bool {
		s.mu.Lock()
		_, launching := s.runtimes[id]
		s.mu.Unlock()
		if launching {
			return true
		}
		rec, err := s.get(id)
		if err != nil {
			// Only a record known to be gone makes an orphan.
			return !errors.Is(err, ErrNotFound)
		}
		return rec.State != api.StateTerminated
	})
	if err != nil {
		s.log.Warn("looking for network interfaces left attached to instances that are gone", "err", err)
		return
	}
	for _, id := range orphans {
		if err := s.vpcs.EndInstance(id); err != nil {
			s.log.Warn("ending the network interfaces of an instance that is gone", "instance", id, "err", err)
			continue
		}
		s.log.Info("ended the network interfaces of an instance that is gone", "instance", id)
	}
}

// syncInterfaces makes rec's copy of its interfaces the network's store's,
// before a launch.
func (s *Service) syncInterfaces(rec instanceRecord) (instanceRecord, error) {
	if s.vpcs == nil {
		return rec, nil
	}
	ns, err := s.vpcs.InstanceInterfaces(rec.ID)
	if err != nil {
		if len(rec.NetworkInterfaces) == 0 {
			// Nothing of the network is needed to launch it as it is.
			return rec, nil
		}
		return rec, err
	}
	want := make([]vpcs.InterfaceRecord, len(ns))
	for i, n := range ns {
		want[i] = vpcs.InterfaceRecord{NetworkInterface: n}
	}
	var r instanceRecord
	r.setInterfaces(want)
	if slices.Equal(r.NetworkInterfaces, rec.NetworkInterfaces) {
		return rec, nil
	}
	return s.update(rec.ID, func(x *instanceRecord) error {
		x.setInterfaces(want)
		return nil
	})
}

// AttachInterface attaches the network interface ref to a stopped
// instance, at req.DeviceIndex or the lowest free one; its card starts
// with the instance's next launch.
func (s *Service) AttachInterface(_ context.Context, ref string, req api.AttachNetworkInterfaceRequest) (api.NetworkInterface, error) {
	if s.vpcs == nil {
		return api.NetworkInterface{}, refusal.New(refusal.ErrInvalidParameter, "this azoted has no network")
	}
	inst, _, unlock, err := s.lockInstance(req.Instance)
	if err != nil {
		return api.NetworkInterface{}, err
	}
	defer unlock()
	if inst.State != api.StateStopped {
		return api.NetworkInterface{}, refusal.New(ErrIncorrectState, "attach needs a stopped instance (a running one gets its interfaces at launch); %s is %s", inst.ID, inst.State)
	}
	out, err := s.vpcs.Attach(ref, inst.ID, req.DeviceIndex)
	if err != nil {
		return api.NetworkInterface{}, err
	}
	if err := s.refreshInterfaces(inst.ID); err != nil {
		if uerr := s.vpcs.EndInterface(out.ID, inst.ID); uerr != nil {
			s.log.Warn("undoing an attachment whose instance record could not follow", "interface", out.ID, "instance", inst.ID, "err", uerr)
		}
		return api.NetworkInterface{}, err
	}
	return out.NetworkInterface, nil
}

// DetachInterface detaches the network interface ref from its stopped
// (or failed) instance. The primary interface stays until the instance
// is terminated.
func (s *Service) DetachInterface(_ context.Context, ref string) (api.NetworkInterface, error) {
	if s.vpcs == nil {
		return api.NetworkInterface{}, refusal.New(refusal.ErrInvalidParameter, "this azoted has no network")
	}
	n, err := s.vpcs.ResolveInterface(ref)
	if err != nil {
		return api.NetworkInterface{}, err
	}
	if n.Attachment == nil {
		return n.NetworkInterface, refusal.New(vpcs.ErrIncorrectInterfaceState, "network interface %s is not attached", n.ID)
	}
	inst, _, unlock, err := s.lockInstance(n.Attachment.InstanceID)
	if err != nil {
		return api.NetworkInterface{}, err
	}
	defer unlock()
	if inst.State != api.StateStopped && inst.State != api.StateFailed {
		return n.NetworkInterface, refusal.New(ErrIncorrectState, "detach needs a stopped instance; %s is %s", inst.ID, inst.State)
	}
	// Checked again under the instance's lock, in the network's
	// transaction (vpcs.DetachTx): a concurrent detach and re-attach
	// elsewhere may have come in between. A record that cannot follow
	// is put right at the instance's next launch (syncInterfaces).
	out, err := s.vpcs.Detach(n.ID, inst.ID)
	if err != nil {
		return api.NetworkInterface{}, err
	}
	return out.NetworkInterface, s.refreshInterfaces(inst.ID)
}

// refreshInterfaces copies the interfaces attached to instance id in the
// network's store into its record.
func (s *Service) refreshInterfaces(id string) error {
	ns, err := s.vpcs.InstanceInterfaces(id)
	if err != nil {
		return err
	}
	recs := make([]vpcs.InterfaceRecord, len(ns))
	for i, n := range ns {
		recs[i] = vpcs.InterfaceRecord{NetworkInterface: n}
	}
	_, err = s.update(id, func(r *instanceRecord) error {
		r.setInterfaces(recs)
		return nil
	})
	return err
}
