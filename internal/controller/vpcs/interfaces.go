package vpcs

import (
	"errors"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// CreateInterface makes a network interface in a subnet, not attached.
func (s *Service) CreateInterface(req api.CreateNetworkInterfaceRequest) (api.NetworkInterface, error) {
	var n InterfaceRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		n, err = s.CreateInterfaceTx(tx, req, nil)
		return n.VPCID, err
	})
	if err != nil {
		return api.NetworkInterface{}, err
	}
	s.log.Info("network interface created", "id", n.ID, "subnet", n.SubnetID, "ip", n.PrivateIP, "mac", n.MAC)
	return n.NetworkInterface, nil
}

// CreateInterfaceTx makes a network interface inside the caller's
// transaction: in req.Subnet, with req.SecurityGroups (all of the
// subnet's VPC; its default group when none), the address req.PrivateIP
// or the lowest free one, a MAC and a numeric id no other interface has.
// With att it is made attached (the primary interface of a launch) and
// lives on this host. A refusal leaves the transaction to be rolled
// back; once it commits, the caller calls Changed(rec.VPCID).
func (s *Service) CreateInterfaceTx(tx store.Tx, req api.CreateNetworkInterfaceRequest, att *api.NetworkInterfaceAttachment) (InterfaceRecord, error) {
	return s.createInterfaceTx(tx, req, att, "")
}

// createInterfaceTx is CreateInterfaceTx for an interface of type typ:
// one of another type than an instance's ("") is in use from the start.
func (s *Service) createInterfaceTx(tx store.Tx, req api.CreateNetworkInterfaceRequest, att *api.NetworkInterfaceAttachment, typ string) (InterfaceRecord, error) {
	var n InterfaceRecord
	if err := checkName("network interface", req.Name); err != nil {
		return n, err
	}
	if e := api.ValidateTags(req.Tags); e != nil {
		return n, e
	}
	if req.Subnet == "" {
		return n, refusal.New(ErrSubnetNotFound, "subnet: a subnet id or name is required")
	}
	if len(req.SecurityGroups) > GroupsPerInterface {
		return n, refusal.New(ErrLimitExceeded, "%d security groups: an interface has at most %d", len(req.SecurityGroups), GroupsPerInterface)
	}
	sn, err := ResolveSubnetTx(tx, req.Subnet)
	if err != nil {
		return n, err
	}
	v, err := vpcOfTx(tx, sn.VPCID)
	if err != nil {
		return n, err
	}
	groups, err := interfaceGroupsTx(tx, v, req.SecurityGroups)
	if err != nil {
		return n, err
	}
	id := api.NewID(api.NetworkInterfaceIDPrefix)
	name := req.Name
	if name == "" {
		name = id
	}
	n = InterfaceRecord{api.NetworkInterface{
		ID: id, Name: name, VPCID: v.ID, SubnetID: sn.ID, SecurityGroups: groups, Status: api.InterfaceAvailable,
		Host: s.cfg.HostID, Tags: req.Tags, CreatedAt: time.Now().UTC(), Type: typ,
	}}
	if typ != "" {
		n.Status = api.InterfaceInUse
	}
	if att != nil {
		if att.DeviceIndex < 0 || att.DeviceIndex > MaxDeviceIndex {
			return n, refusal.New(refusal.ErrInvalidParameter, "device index %d: want 0 to %d", att.DeviceIndex, MaxDeviceIndex)
		}
		a := *att
		n.Attachment, n.Status = &a, api.InterfaceInUse
	}
	p := netip.MustParsePrefix(sn.CIDR)
	ip, err := s.allocateTx(tx, sn, p, req.PrivateIP, id)
	if err != nil {
		return n, err
	}
	n.PrivateIP = ip.String()
	if n.MAC, err = claimMACTx(tx, id); err != nil {
		return n, err
	}
	if n.NumericID, err = claimNumberTx(tx, &v, id); err != nil {
		return n, err
	}
	if err := claimNameTx(tx, "network interface", nameKey("network-interface", name), name, id); err != nil {
		return n, err
	}
	if att != nil {
		if err := checkDeviceFreeTx(tx, att.InstanceID, att.DeviceIndex, id); err != nil {
			return n, err
		}
	}
	if err := tx.Create(InterfaceTable, id, &n); err != nil {
		return n, err
	}
	return n, bumpTx(tx, &v)
}

// interfaceGroupsTx resolves the groups of a new interface of VPC v: each
// one of v's, no repeats; v's default group when none.
func interfaceGroupsTx(tx store.Tx, v VPCRecord, refs []string) ([]string, error) {
	if len(refs) == 0 {
		return []string{v.DefaultSecurityGroup}, nil
	}
	out := make([]string, 0, len(refs))
	for _, ref := range refs {
		g, err := ResolveGroupTx(tx, ref, v.ID)
		if err != nil {
			if o, err2 := ResolveGroupTx(tx, ref, ""); err2 == nil && o.VPCID != v.ID {
				return nil, refusal.New(ErrInvalidGroup, "security group %s is in VPC %s; the interface is in VPC %s", o.ID, o.VPCID, v.ID)
			}
			return nil, err
		}
		if g.VPCID != v.ID {
			return nil, refusal.New(ErrInvalidGroup, "security group %s is in VPC %s; the interface is in VPC %s", g.ID, g.VPCID, v.ID)
		}
		if !slices.Contains(out, g.ID) {
			out = append(out, g.ID)
		}
	}
	return out, nil
}

func addressKey(subnetID string, a netip.Addr) string {
	return claimKey("address", subnetID, a.String())
}

// allocateTx claims an address of subnet sn for interface id: want, or
// the lowest free one.
func (s *Service) allocateTx(tx store.Tx, sn SubnetRecord, p netip.Prefix, want, id string) (netip.Addr, error) {
	if want != "" {
		a, err := checkRequested(want, p)
		if err != nil {
			return a, err
		}
		taken, err := claimTx(tx, addressKey(sn.ID, a), id)
		if err != nil {
			return a, err
		}
		if taken {
			owner, _ := ownerTx(tx, addressKey(sn.ID, a))
			return a, refusal.New(ErrAddressInUse, "%s is in use by network interface %s", a, owner)
		}
		return a, nil
	}
	ifaces, err := allInterfacesTx(tx)
	if err != nil {
		return netip.Addr{}, err
	}
	used := map[netip.Addr]bool{}
	for _, x := range ifaces {
		if x.SubnetID == sn.ID {
			if a, err := netip.ParseAddr(x.PrivateIP); err == nil {
				used[a] = true
			}
		}
	}
	// The claims decide: an address another transaction took since the
	// scan (on another host) is skipped.
	for {
		a, ok := lowestFree(p, used)
		if !ok {
			return a, refusal.New(ErrAddressesExhausted, "subnet %s (%s) has no free address left: its %d usable addresses are taken", sn.ID, sn.CIDR, Usable(p))
		}
		taken, err := claimTx(tx, addressKey(sn.ID, a), id)
		if err != nil {
			return a, err
		}
		if !taken {
			return a, nil
		}
		used[a] = true
	}
}

// claimMACTx gives interface id a MAC no other interface has.
func claimMACTx(tx store.Tx, id string) (string, error) {
	for try := 0; try < 16; try++ {
		mac, err := randomMAC()
		if err != nil {
			return "", err
		}
		taken, err := claimTx(tx, claimKey("mac", mac), id)
		if err != nil || !taken {
			return mac, err
		}
	}
	return "", errors.New("vpcs: no free MAC found in 16 tries")
}

// claimNumberTx gives interface id a numeric id unique in VPC v, from
// v's counter on (v is written by the caller).
func claimNumberTx(tx store.Tx, v *VPCRecord, id string) (uint32, error) {
	n := max(v.NextInterface, 1)
	for range 1 << 20 {
		taken, err := claimTx(tx, claimKey("interface-number", v.ID, u32Key(n)), id)
		if err != nil {
			return 0, err
		}
		next := n + 1
		if next == 0 {
			next = 1
		}
		if !taken {
			v.NextInterface = next
			return n, nil
		}
		n = next
	}
	return 0, refusal.New(ErrLimitExceeded, "VPC %s has no free interface number", v.ID)
}

// checkDeviceFreeTx refuses device index idx of instance instID when an
// interface other than self has it.
func checkDeviceFreeTx(tx store.Tx, instID string, idx int, self string) error {
	ifaces, err := allInterfacesTx(tx)
	if err != nil {
		return err
	}
	for _, x := range ifaces {
		if x.ID != self && x.Attachment != nil && x.Attachment.InstanceID == instID && x.Attachment.DeviceIndex == idx {
			return refusal.New(refusal.ErrInvalidParameter, "instance %s has network interface %s at device index %d", instID, x.ID, idx)
		}
	}
	return nil
}

// DescribeInterface returns the network interface ref.
func (s *Service) DescribeInterface(ref string) (api.NetworkInterface, error) {
	n, err := s.ResolveInterface(ref)
	return n.NetworkInterface, err
}

// ListInterfaces returns the interfaces of the VPC vpcRef (every VPC's
// when empty), oldest first.
func (s *Service) ListInterfaces(vpcRef string) ([]api.NetworkInterface, error) {
	out := []api.NetworkInterface{}
	err := s.view(func(tx store.Tx) error {
		vpcID, err := filterVPC(tx, vpcRef)
		if err != nil {
			return err
		}
		all, err := allInterfacesTx(tx)
		for _, n := range all {
			if vpcID == "" || n.VPCID == vpcID {
				out = append(out, n.NetworkInterface)
			}
		}
		return err
	})
	return out, err
}

// DeleteInterface deletes an interface that is not attached, giving back
// its address, MAC, number and name.
func (s *Service) DeleteInterface(ref string) (api.NetworkInterface, error) {
	var n InterfaceRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		if n, err = ResolveInterfaceTx(tx, ref); err != nil {
			return "", err
		}
		if n.Attachment != nil {
			return "", refusal.New(ErrInterfaceInUse, "network interface %s is attached to instance %s; detach it first", n.ID, n.Attachment.InstanceID)
		}
		if err := notHostGateway(n); err != nil {
			return "", err
		}
		return n.VPCID, deleteInterfaceTx(tx, n)
	})
	if err != nil {
		return api.NetworkInterface{}, err
	}
	s.log.Info("network interface deleted", "id", n.ID)
	return n.NetworkInterface, nil
}

// deleteInterfaceTx removes n and its claims, and writes its VPC.
func deleteInterfaceTx(tx store.Tx, n InterfaceRecord) error {
	v, err := vpcOfTx(tx, n.VPCID)
	if err != nil {
		return err
	}
	keys := []string{
		claimKey("mac", n.MAC), claimKey("interface-number", n.VPCID, u32Key(n.NumericID)),
		nameKey("network-interface", n.Name),
	}
	if a, err := netip.ParseAddr(n.PrivateIP); err == nil {
		keys = append(keys, addressKey(n.SubnetID, a))
	}
	for _, k := range keys {
		if err := releaseTx(tx, k); err != nil {
			return err
		}
	}
	if err := tx.Delete(InterfaceTable, n.ID); err != nil {
		return err
	}
	return bumpTx(tx, &v)
}

// AttachTx attaches the interface ref to instance instID at device index
// idx (nil: the lowest free one), inside the instance owner's
// transaction; the interface then lives on this host. The instance owner
// checks the instance's state; once the transaction commits, it calls
// Changed(rec.VPCID).
func (s *Service) AttachTx(tx store.Tx, ref, instID string, idx *int) (InterfaceRecord, error) {
	n, err := ResolveInterfaceTx(tx, ref)
	if err != nil {
		return n, err
	}
	if n.Attachment != nil {
		return n, refusal.New(ErrInterfaceInUse, "network interface %s is attached to instance %s", n.ID, n.Attachment.InstanceID)
	}
	if err := notHostGateway(n); err != nil {
		return n, err
	}
	used := map[int]bool{}
	ifaces, err := allInterfacesTx(tx)
	if err != nil {
		return n, err
	}
	for _, x := range ifaces {
		if x.Attachment != nil && x.Attachment.InstanceID == instID {
			used[x.Attachment.DeviceIndex] = true
		}
	}
	i := 0
	if idx != nil {
		i = *idx
		if i < 0 || i > MaxDeviceIndex {
			return n, refusal.New(refusal.ErrInvalidParameter, "device index %d: want 0 to %d", i, MaxDeviceIndex)
		}
		if used[i] {
			return n, refusal.New(refusal.ErrInvalidParameter, "instance %s has an interface at device index %d", instID, i)
		}
	} else {
		for used[i] {
			i++
		}
		if i > MaxDeviceIndex {
			return n, refusal.New(ErrLimitExceeded, "instance %s has %d interfaces, the most it may have", instID, MaxDeviceIndex+1)
		}
	}
	v, err := vpcOfTx(tx, n.VPCID)
	if err != nil {
		return n, err
	}
	n.Attachment = &api.NetworkInterfaceAttachment{InstanceID: instID, DeviceIndex: i}
	n.Status, n.Host = api.InterfaceInUse, s.cfg.HostID
	if err := tx.Put(InterfaceTable, n.ID, &n); err != nil {
		return n, err
	}
	return n, bumpTx(tx, &v)
}

// DetachTx detaches the interface ref from instance instID, inside the
// instance owner's transaction. The primary interface (device index 0)
// stays until its instance ends.
func DetachTx(tx store.Tx, ref, instID string) (InterfaceRecord, error) {
	n, err := ResolveInterfaceTx(tx, ref)
	if err != nil {
		return n, err
	}
	if n.Attachment == nil || n.Attachment.InstanceID != instID {
		return n, refusal.New(ErrIncorrectInterfaceState, "network interface %s is not attached to instance %s", n.ID, instID)
	}
	if n.Attachment.DeviceIndex == 0 {
		return n, refusal.New(ErrOperationNotPermitted, "network interface %s is the primary interface of instance %s; it goes when the instance is terminated", n.ID, instID)
	}
	return n, detachTx(tx, &n)
}

func detachTx(tx store.Tx, n *InterfaceRecord) error {
	v, err := vpcOfTx(tx, n.VPCID)
	if err != nil {
		return err
	}
	n.Attachment, n.Status = nil, api.InterfaceAvailable
	if err := tx.Put(InterfaceTable, n.ID, n); err != nil {
		return err
	}
	return bumpTx(tx, &v)
}

// EndTx ends the attachment of interface id to the terminated instance
// instID, inside the instance owner's transaction: an interface made with
// the instance (delete on termination) is deleted, any other detached.
// An interface that is gone or attached elsewhere is left as it is. It
// returns the interface's VPC for Changed ("" when nothing changed).
func EndTx(tx store.Tx, id, instID string) (vpcID string, err error) {
	var n InterfaceRecord
	err = tx.Get(InterfaceTable, id, &n)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil || n.Attachment == nil || n.Attachment.InstanceID != instID {
		return "", err
	}
	if n.Attachment.DeleteOnTermination {
		return n.VPCID, deleteInterfaceTx(tx, n)
	}
	return n.VPCID, detachTx(tx, &n)
}

// InstanceInterfacesTx returns the interfaces attached to instance
// instID, by device index.
func InstanceInterfacesTx(tx store.Tx, instID string) ([]InterfaceRecord, error) {
	all, err := allInterfacesTx(tx)
	var out []InterfaceRecord
	for _, n := range all {
		if n.Attachment != nil && n.Attachment.InstanceID == instID {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attachment.DeviceIndex < out[j].Attachment.DeviceIndex })
	return out, err
}

// InstanceView is what an instance shows of its interface n.
func InstanceView(n InterfaceRecord) api.InstanceNetworkInterface {
	v := api.InstanceNetworkInterface{ID: n.ID, VPCID: n.VPCID, SubnetID: n.SubnetID, PrivateIP: n.PrivateIP, MAC: n.MAC}
	if n.Attachment != nil {
		v.DeviceIndex = n.Attachment.DeviceIndex
	}
	return v
}
