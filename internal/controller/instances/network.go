package instances

import (
	"context"
	"slices"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/store"
)

// Network interfaces are attached here, as volumes are: the instance's
// list of interfaces and each interface's attachment change together, in
// one transaction, under the instance's operation lock. A running
// instance gets interfaces only at launch (its primary one, with
// RunInstanceRequest.Subnet); others are attached while it is stopped.

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

// endInterfacesTx ends every interface attached to instance id (the
// primary deleted, the others detached) and returns their VPCs.
func endInterfacesTx(tx store.Tx, id string) ([]string, error) {
	ns, err := vpcs.InstanceInterfacesTx(tx, id)
	if err != nil {
		return nil, err
	}
	var ended []string
	for _, n := range ns {
		vpcID, err := vpcs.EndTx(tx, n.ID, id)
		if err != nil {
			return ended, err
		}
		ended = append(ended, vpcID)
	}
	return ended, nil
}

// vpcsChanged tells the network owner's subscribers about VPCs changed
// by a transaction of this package that has committed.
func (s *Service) vpcsChanged(vpcIDs []string) {
	if s.vpcs != nil && len(vpcIDs) > 0 {
		s.vpcs.Changed(vpcIDs...)
	}
}

func (s *Service) interfacesChanged(ns []api.InstanceNetworkInterface) {
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.VPCID)
	}
	s.vpcsChanged(ids)
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
	var out vpcs.InterfaceRecord
	err = s.store.Update(func(tx store.Tx) error {
		var err error
		if out, err = s.vpcs.AttachTx(tx, ref, inst.ID, req.DeviceIndex); err != nil {
			return err
		}
		return s.refreshInterfacesTx(tx, inst.ID)
	})
	if err != nil {
		return api.NetworkInterface{}, err
	}
	s.vpcs.Changed(out.VPCID)
	s.wake(inst.ID)
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
	var out vpcs.InterfaceRecord
	err = s.store.Update(func(tx store.Tx) error {
		// Checked again under the instance's lock, in the transaction
		// (vpcs.DetachTx): a concurrent detach and re-attach elsewhere may
		// have come in between.
		var err error
		if out, err = vpcs.DetachTx(tx, n.ID, inst.ID); err != nil {
			return err
		}
		return s.refreshInterfacesTx(tx, inst.ID)
	})
	if err != nil {
		return api.NetworkInterface{}, err
	}
	s.vpcs.Changed(out.VPCID)
	s.wake(inst.ID)
	return out.NetworkInterface, nil
}

// refreshInterfacesTx copies the interfaces attached to instance id into
// its record and bumps its revision.
func (s *Service) refreshInterfacesTx(tx store.Tx, id string) error {
	ns, err := vpcs.InstanceInterfacesTx(tx, id)
	if err != nil {
		return err
	}
	var r instanceRecord
	if err := tx.Get(Table, id, &r); err != nil {
		return err
	}
	r.setInterfaces(ns)
	r.Revision++
	return tx.Put(Table, id, &r)
}
