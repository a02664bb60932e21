package vpcs

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
)

// Store tables of this package.
const (
	VPCTable       = "vpcs"               // VPCRecord by id
	SubnetTable    = "subnets"            // SubnetRecord by id
	GroupTable     = "security_groups"    // GroupRecord by id
	InterfaceTable = "network_interfaces" // InterfaceRecord by id
	// ClaimTable holds one record per unique value (claim).
	ClaimTable = "network_claims"
)

// Limits, as EC2's defaults.
const (
	// RulesPerDirection bounds the ingress (and the egress) rules of one
	// security group.
	RulesPerDirection = 60
	// GroupsPerInterface bounds the security groups of one interface.
	GroupsPerInterface = 5
	// MaxDeviceIndex is the highest device index of an attachment.
	MaxDeviceIndex = 15
)

// Refusals of this package.
var (
	ErrVPCNotFound       = errors.New("VPC not found")
	ErrSubnetNotFound    = errors.New("subnet not found")
	ErrGroupNotFound     = errors.New("security group not found")
	ErrInterfaceNotFound = errors.New("network interface not found")
	// ErrInvalidVPCRange: a VPC CIDR that is malformed, not /16 to /28,
	// not a network address, or in a block a VPC may not use.
	ErrInvalidVPCRange = errors.New("invalid VPC range")
	// ErrInvalidSubnetRange: a subnet CIDR that is malformed, not /16 to
	// /28, not a network address, or not inside its VPC's.
	ErrInvalidSubnetRange = errors.New("invalid subnet range")
	// ErrSubnetConflict: a subnet CIDR overlaps another of its VPC.
	ErrSubnetConflict = errors.New("subnet conflict")
	// ErrInvalidIPAddress: a malformed or reserved address.
	ErrInvalidIPAddress = errors.New("invalid IP address")
	// ErrAddressInUse: another interface has the address.
	ErrAddressInUse = errors.New("address in use")
	// ErrAddressNotInSubnet: the address is outside the subnet.
	ErrAddressNotInSubnet = errors.New("address not in subnet")
	// ErrAddressesExhausted: the subnet has no free address left.
	ErrAddressesExhausted = errors.New("insufficient free addresses in subnet")
	// ErrInvalidGroup: a security group of another VPC.
	ErrInvalidGroup = errors.New("security group of another VPC")
	// ErrDependencyViolation: the object is still used by others.
	ErrDependencyViolation = errors.New("dependency violation")
	// ErrCannotDelete: a VPC's default group goes only with its VPC.
	ErrCannotDelete  = errors.New("cannot delete")
	ErrDuplicateRule = errors.New("duplicate rule")
	ErrRuleNotFound  = errors.New("rule not found")
	// ErrInterfaceInUse: the interface is attached to an instance.
	ErrInterfaceInUse = errors.New("network interface in use")
	// ErrIncorrectInterfaceState: the interface is not attached (to
	// the instance named).
	ErrIncorrectInterfaceState = errors.New("incorrect network interface state")
	// ErrOperationNotPermitted: a primary interface cannot be detached.
	ErrOperationNotPermitted = errors.New("operation not permitted")
	// ErrLimitExceeded: too many rules in a group, groups on an
	// interface.
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrHostGatewayConflict: the host gateway of a VPC whose block
	// overlaps another's that has one (the host could not tell them
	// apart).
	ErrHostGatewayConflict = errors.New("host gateway conflict")
)

// VPCRecord is the stored VPC: the public view, its wrapped traffic keys
// and its counters.
type VPCRecord struct {
	api.VPC
	// Keys are the VPC's traffic keys, wrapped under keys.Network, oldest
	// first: the current epoch (KeyEpoch); the previous one before it,
	// until the next rotation ends; and during a rotation the next one
	// (NextKeyEpoch) after it. See RotateKey.
	Keys []WrappedKey `json:"keys"`
	// NextInterface is the numeric id the next interface tries first:
	// ids are not reused soon after their interface is gone.
	NextInterface uint32 `json:"next_interface"`
	// Revision counts the committed changes to the VPC and everything in
	// it. Every change writes it, so that two concurrent changes to one
	// VPC conflict in the store.
	Revision uint64 `json:"revision"`
}

// WrappedKey is one epoch of a VPC's traffic key, wrapped.
type WrappedKey struct {
	Epoch   uint32 `json:"epoch"`
	Wrapped []byte `json:"wrapped"`
}

// SubnetRecord is the stored subnet (AvailableAddresses is computed on
// reading).
type SubnetRecord struct {
	api.Subnet
}

// GroupRecord is the stored security group.
type GroupRecord struct {
	api.SecurityGroup
}

// InterfaceRecord is the stored network interface.
type InterfaceRecord struct {
	api.NetworkInterface
}

// Config is what the network owner is given at wiring.
type Config struct {
	// Store holds the network records: azoted's own store on a single
	// host, the fleet's shared one (package store/etcd) when hosts share
	// VPCs. Its unavailability is refused with refusal.ErrUnavailable.
	Store store.Store
	// Keys wraps the VPCs' traffic keys under keys.Network: the host key
	// on a single host, the fleet key (keys.Fleet) when the store is
	// shared, so that every host of the fleet can open them.
	Keys keys.Wrapper
	// HostID names this host; interfaces of its instances live on it.
	// Hosts sharing a store must have distinct ids (ClaimHost).
	HostID string
	// Event records a security decision (a traffic key unwrapped, the
	// host gateway turned on) in the audit trail.
	Event func(name, resource string, data map[string]any)
	// RotationGrace bounds how long a key rotation waits for every card
	// of its VPC to accept the next key (DefaultRotationGrace if 0).
	RotationGrace time.Duration
	Log           *slog.Logger
}

// Service is the owner of the network records.
type Service struct {
	cfg Config
	db  store.Store
	log *slog.Logger

	mu      sync.Mutex
	nextSub int
	subs    map[int]func(vpcID string)
}

// New returns the network owner.
func New(cfg Config) *Service {
	if cfg.Event == nil {
		cfg.Event = func(string, string, map[string]any) {}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.RotationGrace == 0 {
		cfg.RotationGrace = DefaultRotationGrace
	}
	s := &Service{cfg: cfg, log: cfg.Log, subs: map[int]func(string){}}
	s.db = guarded{Store: cfg.Store, log: cfg.Log}
	return s
}

// guarded is the store as this package uses it: a store that cannot
// reach its cluster (store.ErrUnavailable) gives a refusal the caller
// can act on, with a stable kind; what the store said goes to the log,
// not to the caller.
type guarded struct {
	store.Store
	log *slog.Logger
}

func (g guarded) View(fn func(store.Tx) error) error {
	err := g.Store.View(fn)
	if errors.Is(err, store.ErrUnavailable) {
		g.log.Warn("the network state store is unavailable", "op", "read", "err", err)
		return refusal.New(refusal.ErrUnavailable, "the network state store cannot be reached from this host: VPC records cannot be read until it is back (running instances keep their network as it was)")
	}
	return err
}

func (g guarded) Update(fn func(store.Tx) error) error {
	err := g.Store.Update(fn)
	if errors.Is(err, store.ErrUnavailable) {
		g.log.Warn("the network state store is unavailable", "op", "change", "err", err)
		return refusal.New(refusal.ErrUnavailable, "the network state store cannot be reached from this host: VPC changes are refused until it is back, and this one may or may not have been made (read it again then); running instances keep their network as it was")
	}
	return err
}

// HostID is the host this owner puts the interfaces of its instances on.
func (s *Service) HostID() string { return s.cfg.HostID }

// Subscribe calls fn with a VPC's id after every committed change to the
// VPC or to anything in it (its subnets, groups, interfaces, key, host
// gateway), the VPC's deletion included. fn runs on the goroutine that
// made the change, after the commit and without any lock of this
// package held; it must not block for long. cancel ends the
// subscription.
func (s *Service) Subscribe(fn func(vpcID string)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nextSub
	s.nextSub++
	s.subs[n] = fn
	return func() {
		s.mu.Lock()
		delete(s.subs, n)
		s.mu.Unlock()
	}
}

// Changed tells the subscribers that vpcID changed. The owner calls it
// after each of its own commits; a caller of a *Tx function calls it
// once its transaction has committed.
func (s *Service) Changed(vpcIDs ...string) {
	s.mu.Lock()
	fns := make([]func(string), 0, len(s.subs))
	keys := make([]int, 0, len(s.subs))
	for k := range s.subs {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		fns = append(fns, s.subs[k])
	}
	s.mu.Unlock()
	seen := map[string]bool{}
	for _, id := range vpcIDs {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		for _, fn := range fns {
			fn(id)
		}
	}
}

// update runs fn in one transaction and, once it has committed, tells
// the subscribers about the VPC fn names.
func (s *Service) update(fn func(tx store.Tx) (vpcID string, err error)) error {
	var vpcID string
	err := s.db.Update(func(tx store.Tx) error {
		var err error
		vpcID, err = fn(tx)
		return err
	})
	if err == nil {
		s.Changed(vpcID)
	}
	return err
}

// bumpTx writes the VPC record with its revision increased: every change
// inside a VPC does, in its transaction.
func bumpTx(tx store.Tx, v *VPCRecord) error {
	v.Revision++
	return tx.Put(VPCTable, v.ID, v)
}

// Claims: one record per value that must be unique beyond one VPC (or
// that must stay unique even if two hosts change one VPC at once),
// created with store.Tx.Create so that the second claim of a value fails
// in the store itself.

type claim struct {
	Owner string `json:"owner"`
}

func claimKey(kind string, parts ...string) string {
	k := kind
	for _, p := range parts {
		k += "/" + p
	}
	return k
}

// claimTx claims key for owner; taken reports that someone else holds it.
func claimTx(tx store.Tx, key, owner string) (taken bool, err error) {
	err = tx.Create(ClaimTable, key, claim{Owner: owner})
	if errors.Is(err, store.ErrExists) {
		return true, nil
	}
	return false, err
}

// ownerTx is the owner of key ("" when unclaimed).
func ownerTx(tx store.Tx, key string) (string, error) {
	var c claim
	err := tx.Get(ClaimTable, key, &c)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return c.Owner, err
}

func releaseTx(tx store.Tx, key string) error { return tx.Delete(ClaimTable, key) }

// Name claims: VPC, subnet and interface names are unique on the host
// (or fleet); a group's name within its VPC.
func nameKey(kind, name string) string { return claimKey("name", kind, name) }
func groupNameKey(vpcID, name string) string {
	return claimKey("name", "security-group", vpcID, name)
}

func checkName(kind, name string) error {
	if name != "" && !api.ValidName(name) {
		return refusal.New(refusal.ErrInvalidName, "%s name %q: %s", kind, name, api.NameRule)
	}
	return nil
}

// claimNameTx claims name for id, refusing a name in use.
func claimNameTx(tx store.Tx, kind, key, name, id string) error {
	taken, err := claimTx(tx, key, id)
	if err != nil {
		return err
	}
	if taken {
		owner, _ := ownerTx(tx, key)
		return refusal.New(refusal.ErrNameInUse, "a %s named %q exists (%s)", kind, name, owner)
	}
	return nil
}

func byCreation[T any](out []T, at func(T) (time.Time, string)) {
	sort.Slice(out, func(i, j int) bool {
		ti, ii := at(out[i])
		tj, ij := at(out[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return ii < ij
	})
}

func allVPCsTx(tx store.Tx) ([]VPCRecord, error) {
	out, err := store.All[VPCRecord](tx, VPCTable)
	byCreation(out, func(v VPCRecord) (time.Time, string) { return v.CreatedAt, v.ID })
	return out, err
}

func allSubnetsTx(tx store.Tx) ([]SubnetRecord, error) {
	out, err := store.All[SubnetRecord](tx, SubnetTable)
	byCreation(out, func(v SubnetRecord) (time.Time, string) { return v.CreatedAt, v.ID })
	return out, err
}

func allGroupsTx(tx store.Tx) ([]GroupRecord, error) {
	out, err := store.All[GroupRecord](tx, GroupTable)
	byCreation(out, func(v GroupRecord) (time.Time, string) { return v.CreatedAt, v.ID })
	return out, err
}

func allInterfacesTx(tx store.Tx) ([]InterfaceRecord, error) {
	out, err := store.All[InterfaceRecord](tx, InterfaceTable)
	byCreation(out, func(v InterfaceRecord) (time.Time, string) { return v.CreatedAt, v.ID })
	return out, err
}

// resolveTx finds a record of table by id, then by the name claim key.
func resolveTx[T any](tx store.Tx, table, ref, nameClaim string, notFound error, kind string) (T, error) {
	var v T
	err := tx.Get(table, ref, &v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return v, err
	}
	if ref != "" && api.ValidName(ref) {
		id, err := ownerTx(tx, nameClaim)
		if err != nil {
			return v, err
		}
		if id != "" {
			if err := tx.Get(table, id, &v); err == nil {
				return v, nil
			} else if !errors.Is(err, store.ErrNotFound) {
				return v, err
			}
		}
	}
	return v, refusal.New(notFound, "no %s %q", kind, ref)
}

// ResolveVPCTx finds a VPC by id, then by name.
func ResolveVPCTx(tx store.Tx, ref string) (VPCRecord, error) {
	return resolveTx[VPCRecord](tx, VPCTable, ref, nameKey("vpc", ref), ErrVPCNotFound, "VPC")
}

// ResolveSubnetTx finds a subnet by id, then by name.
func ResolveSubnetTx(tx store.Tx, ref string) (SubnetRecord, error) {
	return resolveTx[SubnetRecord](tx, SubnetTable, ref, nameKey("subnet", ref), ErrSubnetNotFound, "subnet")
}

// ResolveInterfaceTx finds a network interface by id, then by name.
func ResolveInterfaceTx(tx store.Tx, ref string) (InterfaceRecord, error) {
	return resolveTx[InterfaceRecord](tx, InterfaceTable, ref, nameKey("network-interface", ref), ErrInterfaceNotFound, "network interface")
}

// ResolveGroupTx finds a security group by id, then by name: within
// vpcID when it is given, else among every VPC's groups, where the name
// must be one group's only ("default" is every VPC's).
func ResolveGroupTx(tx store.Tx, ref, vpcID string) (GroupRecord, error) {
	if vpcID != "" {
		return resolveTx[GroupRecord](tx, GroupTable, ref, groupNameKey(vpcID, ref), ErrGroupNotFound, "security group")
	}
	var g GroupRecord
	err := tx.Get(GroupTable, ref, &g)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return g, err
	}
	all, err := allGroupsTx(tx)
	if err != nil {
		return g, err
	}
	var found []GroupRecord
	for _, x := range all {
		if x.Name == ref {
			found = append(found, x)
		}
	}
	switch len(found) {
	case 0:
		return g, refusal.New(ErrGroupNotFound, "no security group %q", ref)
	case 1:
		return found[0], nil
	}
	return g, refusal.New(ErrGroupNotFound, "%d VPCs have a security group named %q (%s, %s, …): name it by id", len(found), ref, found[0].ID, found[1].ID)
}

func (s *Service) view(fn func(tx store.Tx) error) error { return s.db.View(fn) }

// ResolveVPC finds a VPC by id, then by name.
func (s *Service) ResolveVPC(ref string) (VPCRecord, error) {
	var v VPCRecord
	err := s.view(func(tx store.Tx) (err error) { v, err = ResolveVPCTx(tx, ref); return })
	return v, err
}

// ResolveSubnet finds a subnet by id, then by name.
func (s *Service) ResolveSubnet(ref string) (SubnetRecord, error) {
	var v SubnetRecord
	err := s.view(func(tx store.Tx) (err error) { v, err = ResolveSubnetTx(tx, ref); return })
	return v, err
}

// ResolveGroup finds a security group by id, then by a name no other
// VPC's group has.
func (s *Service) ResolveGroup(ref string) (GroupRecord, error) {
	var v GroupRecord
	err := s.view(func(tx store.Tx) (err error) { v, err = ResolveGroupTx(tx, ref, ""); return })
	return v, err
}

// ResolveInterface finds a network interface by id, then by name.
func (s *Service) ResolveInterface(ref string) (InterfaceRecord, error) {
	var v InterfaceRecord
	err := s.view(func(tx store.Tx) (err error) { v, err = ResolveInterfaceTx(tx, ref); return })
	return v, err
}

// vpcOf reads the VPC a subnet, group or interface belongs to.
func vpcOfTx(tx store.Tx, id string) (VPCRecord, error) {
	var v VPCRecord
	err := tx.Get(VPCTable, id, &v)
	if errors.Is(err, store.ErrNotFound) {
		return v, fmt.Errorf("vpcs: the VPC %s of a record is gone: %w", id, err)
	}
	return v, err
}
