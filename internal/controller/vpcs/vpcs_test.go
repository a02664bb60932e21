package vpcs

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
)

type fixture struct {
	t      testing.TB
	db     store.Store
	s      *Service
	mu     sync.Mutex
	events []string
}

// newFixture is a network owner over a store in a temporary directory
// and the host key, on host "host-a".
func newFixture(t testing.TB) *fixture {
	fx := &fixture{t: t}
	dir := t.TempDir()
	db, err := store.OpenBolt(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hostKey, esc, err := keys.OpenHost(filepath.Join(dir, "host.key"))
	if err != nil {
		t.Fatal(err)
	}
	esc.Free()
	fx.db = db
	fx.s = New(Config{Store: db, Keys: hostKey, HostID: "host-a", Event: func(name, resource string, _ map[string]any) {
		fx.mu.Lock()
		fx.events = append(fx.events, name+" "+resource)
		fx.mu.Unlock()
	}})
	return fx
}

func (fx *fixture) vpc(cidr string) api.VPC {
	fx.t.Helper()
	v, err := fx.s.CreateVPC(api.CreateVPCRequest{CIDR: cidr})
	if err != nil {
		fx.t.Fatal(err)
	}
	return v
}

func (fx *fixture) subnet(vpc, cidr string) api.Subnet {
	fx.t.Helper()
	sn, err := fx.s.CreateSubnet(api.CreateSubnetRequest{VPC: vpc, CIDR: cidr})
	if err != nil {
		fx.t.Fatal(err)
	}
	return sn
}

func (fx *fixture) group(vpc, name string) api.SecurityGroup {
	fx.t.Helper()
	g, err := fx.s.CreateSecurityGroup(api.CreateSecurityGroupRequest{VPC: vpc, Name: name})
	if err != nil {
		fx.t.Fatal(err)
	}
	return g
}

func (fx *fixture) eni(req api.CreateNetworkInterfaceRequest) api.NetworkInterface {
	fx.t.Helper()
	n, err := fx.s.CreateInterface(req)
	if err != nil {
		fx.t.Fatal(err)
	}
	return n
}

// snapshot is every record of the package's tables, raw.
func (fx *fixture) snapshot() map[string]string {
	fx.t.Helper()
	out := map[string]string{}
	err := fx.db.View(func(tx store.Tx) error {
		for _, table := range []string{VPCTable, SubnetTable, GroupTable, InterfaceTable, ClaimTable} {
			if err := tx.ForEach(table, func(k string, raw []byte) error {
				out[table+"/"+k] = string(raw)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		fx.t.Fatal(err)
	}
	return out
}

// unchanged fails unless the tables are as they were in before.
func (fx *fixture) unchanged(what string, before map[string]string) {
	fx.t.Helper()
	after := fx.snapshot()
	for k, v := range after {
		if before[k] != v {
			fx.t.Errorf("%s changed %s", what, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			fx.t.Errorf("%s removed %s", what, k)
		}
	}
}

func wantErr(t *testing.T, what string, err, kind error) {
	t.Helper()
	var r *refusal.Error
	if !errors.Is(err, kind) || !errors.As(err, &r) || r.Message == "" {
		t.Errorf("%s: %v, want a refusal of kind %q", what, err, kind)
	}
}

func TestCreateVPC(t *testing.T) {
	fx := newFixture(t)
	v, err := fx.s.CreateVPC(api.CreateVPCRequest{Name: "prod", CIDR: "10.0.0.0/16", Tags: map[string]string{"env": "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.ID, "vpc-") || len(v.ID) != api.IDLen(api.VPCIDPrefix) || v.NumericID == 0 || v.KeyEpoch != 1 || v.CIDR != "10.0.0.0/16" || v.HostGateway {
		t.Fatalf("created %+v", v)
	}
	// The default group: ingress of everything from its own members,
	// egress of everything anywhere.
	groups, err := fx.s.ListSecurityGroups(v.ID)
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups of a new VPC: %+v %v", groups, err)
	}
	def := groups[0]
	wantIn := []api.SecurityGroupRule{{Protocol: "all", FromPort: -1, ToPort: -1, Group: def.ID}}
	wantOut := []api.SecurityGroupRule{{Protocol: "all", FromPort: -1, ToPort: -1, CIDR: "0.0.0.0/0"}}
	if def.ID != v.DefaultSecurityGroup || !def.Default || def.Name != "default" || !slices.Equal(def.Ingress, wantIn) || !slices.Equal(def.Egress, wantOut) {
		t.Errorf("default group %+v", def)
	}
	// By name, and the name is taken.
	if got, err := fx.s.ResolveVPC("prod"); err != nil || got.ID != v.ID {
		t.Errorf("resolve by name: %v %v", got.ID, err)
	}
	_, err = fx.s.CreateVPC(api.CreateVPCRequest{Name: "prod", CIDR: "10.1.0.0/16"})
	wantErr(t, "a second VPC named prod", err, refusal.ErrNameInUse)
	// Two VPCs may use the same block: they never meet.
	w := fx.vpc("10.0.0.0/16")
	if w.NumericID == v.NumericID || w.Name != w.ID {
		t.Errorf("second VPC %+v", w)
	}

	for _, tc := range []struct {
		cidr string
		kind error
	}{
		{"10.0.0.0/15", ErrInvalidVPCRange},
		{"10.0.0.0/29", ErrInvalidVPCRange},
		{"10.0.0.1/16", ErrInvalidVPCRange},
		{"10.0.0.0", ErrInvalidVPCRange},
		{"fd00::/56", ErrInvalidVPCRange},
		{"::ffff:10.0.0.0/112", ErrInvalidVPCRange},
		{"169.254.0.0/16", ErrInvalidVPCRange},
		{"127.0.0.0/16", ErrInvalidVPCRange},
		{"224.0.0.0/16", ErrInvalidVPCRange},
		{"", ErrInvalidVPCRange},
	} {
		before := fx.snapshot()
		_, err := fx.s.CreateVPC(api.CreateVPCRequest{CIDR: tc.cidr})
		wantErr(t, "CIDR "+tc.cidr, err, tc.kind)
		fx.unchanged("a refused VPC "+tc.cidr, before)
	}
	_, err = fx.s.CreateVPC(api.CreateVPCRequest{Name: "vpc-0123456789abcdef0", CIDR: "10.2.0.0/16"})
	wantErr(t, "a name in the form of an id", err, refusal.ErrInvalidName)
	if _, err := fx.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.2.0.0/16", Tags: map[string]string{"aws:x": "y"}}); !api.IsCode(err, api.CodeInvalidParameter) {
		t.Errorf("a reserved tag: %v", err)
	}
}

func TestSubnets(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	other := fx.vpc("10.0.0.0/16")
	a := fx.subnet(v.ID, "10.0.1.0/24")
	if a.Gateway != "10.0.1.1" || a.AvailableAddresses != 251 || a.VPCID != v.ID || !strings.HasPrefix(a.ID, "subnet-") {
		t.Fatalf("subnet %+v", a)
	}
	small := fx.subnet(v.ID, "10.0.2.0/28")
	if small.AvailableAddresses != 11 || small.Gateway != "10.0.2.1" {
		t.Errorf("a /28: %+v", small)
	}
	// The same block in another VPC is no conflict.
	fx.subnet(other.ID, "10.0.1.0/24")
	for _, tc := range []struct {
		vpc, cidr string
		kind      error
	}{
		{v.ID, "10.0.1.0/24", ErrSubnetConflict},   // the same
		{v.ID, "10.0.0.0/16", ErrSubnetConflict},   // the whole VPC, holding both
		{v.ID, "10.0.1.128/25", ErrSubnetConflict}, // inside one
		{v.ID, "10.0.2.8/29", ErrInvalidSubnetRange},
		{v.ID, "10.1.0.0/24", ErrInvalidSubnetRange},  // outside the VPC
		{v.ID, "10.0.3.0/29", ErrInvalidSubnetRange},  // too small
		{v.ID, "10.0.3.1/24", ErrInvalidSubnetRange},  // host bits
		{v.ID, "10.0.3.0/24x", ErrInvalidSubnetRange}, // garbage
		{"vpc-none", "10.0.3.0/24", ErrVPCNotFound},
		{"", "10.0.3.0/24", ErrVPCNotFound},
	} {
		before := fx.snapshot()
		_, err := fx.s.CreateSubnet(api.CreateSubnetRequest{VPC: tc.vpc, CIDR: tc.cidr})
		wantErr(t, "subnet "+tc.cidr, err, tc.kind)
		fx.unchanged("a refused subnet "+tc.cidr, before)
	}
	// A VPC smaller than /16 holds a subnet of its own size.
	w := fx.vpc("192.168.0.0/24")
	if sn := fx.subnet(w.ID, "192.168.0.0/24"); sn.AvailableAddresses != 251 {
		t.Errorf("a subnet as large as its VPC: %+v", sn)
	}
	if l, err := fx.s.ListSubnets(v.ID); err != nil || len(l) != 2 || l[0].ID != a.ID || l[1].ID != small.ID {
		t.Errorf("subnets of %s: %+v %v", v.ID, l, err)
	}
	if l, _ := fx.s.ListSubnets(""); len(l) != 4 {
		t.Errorf("all subnets: %d", len(l))
	}
	// A subnet with an interface stays; without, it goes.
	n := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: a.ID})
	_, err := fx.s.DeleteSubnet(a.ID)
	wantErr(t, "delete a subnet with an interface", err, ErrDependencyViolation)
	if _, err := fx.s.DeleteInterface(n.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.DeleteSubnet(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.ResolveSubnet(a.ID); !errors.Is(err, ErrSubnetNotFound) {
		t.Errorf("a deleted subnet: %v", err)
	}
}

// Addresses are given lowest first, never the four first nor the last
// of a subnet, never twice; asked-for addresses must be in the subnet,
// usable and free; a full subnet says so.
func TestAllocation(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	sn := fx.subnet(v.ID, "10.0.5.0/28") // .0-.15: .4 to .14 usable
	for _, tc := range []struct {
		ip   string
		kind error
	}{
		{"10.0.5.0", ErrInvalidIPAddress},
		{"10.0.5.1", ErrInvalidIPAddress},
		{"10.0.5.2", ErrInvalidIPAddress},
		{"10.0.5.3", ErrInvalidIPAddress},
		{"10.0.5.15", ErrInvalidIPAddress},
		{"10.0.6.4", ErrAddressNotInSubnet},
		{"10.0.5.256", ErrInvalidIPAddress},
		{"fd00::4", ErrInvalidIPAddress},
		{"ten", ErrInvalidIPAddress},
	} {
		before := fx.snapshot()
		_, err := fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, PrivateIP: tc.ip})
		wantErr(t, "address "+tc.ip, err, tc.kind)
		fx.unchanged("a refused address "+tc.ip, before)
	}
	asked := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, PrivateIP: "10.0.5.9"})
	if asked.PrivateIP != "10.0.5.9" {
		t.Fatalf("asked for .9, got %s", asked.PrivateIP)
	}
	_, err := fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, PrivateIP: "10.0.5.9"})
	wantErr(t, "an address in use", err, ErrAddressInUse)
	var got []string
	for range 10 {
		got = append(got, fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID}).PrivateIP)
	}
	want := []string{"10.0.5.4", "10.0.5.5", "10.0.5.6", "10.0.5.7", "10.0.5.8", "10.0.5.10", "10.0.5.11", "10.0.5.12", "10.0.5.13", "10.0.5.14"}
	if !slices.Equal(got, want) {
		t.Fatalf("allocated %q, want %q", got, want)
	}
	if d, _ := fx.s.DescribeSubnet(sn.ID); d.AvailableAddresses != 0 {
		t.Errorf("a full /28 has %d available", d.AvailableAddresses)
	}
	before := fx.snapshot()
	_, err = fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	wantErr(t, "a full subnet", err, ErrAddressesExhausted)
	fx.unchanged("a refused interface in a full subnet", before)
	// A deleted interface's address is free again.
	if _, err := fx.s.DeleteInterface(asked.ID); err != nil {
		t.Fatal(err)
	}
	if n := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID}); n.PrivateIP != "10.0.5.9" {
		t.Errorf("after a delete, allocated %s, want 10.0.5.9", n.PrivateIP)
	}
}

// Interfaces made at once from many goroutines get distinct addresses,
// MACs and numbers; so do VPCs made at once.
func TestConcurrentCreates(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	sn := fx.subnet(v.ID, "10.0.7.0/26") // 59 usable
	const n = 40
	var wg sync.WaitGroup
	out := make([]api.NetworkInterface, n)
	vpcsOut := make([]api.VPC, 8)
	errs := make(chan error, n+len(vpcsOut))
	for i := range n {
		wg.Go(func() {
			x, err := fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
			out[i] = x
			errs <- err
		})
	}
	for i := range vpcsOut {
		wg.Go(func() {
			x, err := fx.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.9.0.0/16"})
			vpcsOut[i] = x
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ips, macs, nums := map[string]bool{}, map[string]bool{}, map[uint32]bool{}
	p := netip.MustParsePrefix(sn.CIDR)
	for _, x := range out {
		a := netip.MustParseAddr(x.PrivateIP)
		if ips[x.PrivateIP] || macs[x.MAC] || nums[x.NumericID] || x.NumericID == 0 || !p.Contains(a) || u32(a)-u32(p.Addr()) < 4 {
			t.Errorf("interface %s: ip %s mac %s number %d repeats or is out of bounds", x.ID, x.PrivateIP, x.MAC, x.NumericID)
		}
		if !strings.HasPrefix(x.MAC, "02:") {
			t.Errorf("MAC %s is not locally administered unicast", x.MAC)
		}
		ips[x.PrivateIP], macs[x.MAC], nums[x.NumericID] = true, true, true
	}
	vnums := map[uint32]bool{}
	for _, x := range vpcsOut {
		if vnums[x.NumericID] || x.NumericID == 0 {
			t.Errorf("VPC %s number %d repeats", x.ID, x.NumericID)
		}
		vnums[x.NumericID] = true
	}
}

// A create refused after it claimed an address, a MAC and a number (its
// name is taken) leaves nothing: no record, no claim, no counter moved.
func TestFailedCreateLeavesNothing(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	sn := fx.subnet(v.ID, "10.0.1.0/24")
	fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, Name: "web"})
	before := fx.snapshot()
	_, err := fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, Name: "web", PrivateIP: "10.0.1.50"})
	wantErr(t, "an interface named web again", err, refusal.ErrNameInUse)
	fx.unchanged("a refused interface", before)
	_, err = fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, SecurityGroups: []string{"sg-none"}})
	wantErr(t, "an unknown group", err, ErrGroupNotFound)
	fx.unchanged("an interface with an unknown group", before)
	_, err = fx.s.CreateSecurityGroup(api.CreateSecurityGroupRequest{VPC: v.ID, Name: "default"})
	wantErr(t, "a group named default", err, refusal.ErrInvalidName)
	fx.unchanged("a group named default", before)
	// The address it asked for is still free.
	if n := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, PrivateIP: "10.0.1.50"}); n.PrivateIP != "10.0.1.50" {
		t.Errorf("got %s", n.PrivateIP)
	}
}

func TestSecurityGroups(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	w := fx.vpc("10.1.0.0/16")
	web := fx.group(v.ID, "web")
	if len(web.Ingress) != 0 || !slices.Equal(web.Egress, []api.SecurityGroupRule{allEgress()}) || web.Default {
		t.Fatalf("a new group: %+v", web)
	}
	// Names are unique per VPC.
	_, err := fx.s.CreateSecurityGroup(api.CreateSecurityGroupRequest{VPC: v.ID, Name: "web"})
	wantErr(t, "a second web in one VPC", err, refusal.ErrNameInUse)
	webW := fx.group(w.ID, "web")
	db := fx.group(v.ID, "db")

	ssh := api.SecurityGroupRule{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: "0.0.0.0/0"}
	fromWeb := api.SecurityGroupRule{Protocol: "TCP", FromPort: 5432, ToPort: 5432, Group: "web"} // a name, in the VPC
	g, err := fx.s.AuthorizeIngress(db.ID, []api.SecurityGroupRule{ssh, fromWeb})
	if err != nil {
		t.Fatal(err)
	}
	if want := []api.SecurityGroupRule{ssh, {Protocol: "tcp", FromPort: 5432, ToPort: 5432, Group: web.ID}}; !slices.Equal(g.Ingress, want) {
		t.Fatalf("ingress %+v, want %+v", g.Ingress, want)
	}
	// All or nothing: a new rule with a duplicate adds neither.
	icmp := api.SecurityGroupRule{Protocol: "icmp", FromPort: 8, ToPort: -1, CIDR: "10.0.0.0/16"}
	before := fx.snapshot()
	_, err = fx.s.AuthorizeIngress(db.ID, []api.SecurityGroupRule{icmp, ssh})
	wantErr(t, "a duplicate rule", err, ErrDuplicateRule)
	_, err = fx.s.AuthorizeIngress(db.ID, []api.SecurityGroupRule{icmp, icmp})
	wantErr(t, "a rule given twice", err, ErrDuplicateRule)
	_, err = fx.s.RevokeIngress(db.ID, []api.SecurityGroupRule{ssh, icmp})
	wantErr(t, "revoking a rule the group lacks", err, ErrRuleNotFound)
	_, err = fx.s.AuthorizeIngress(db.ID, []api.SecurityGroupRule{{Protocol: "tcp", FromPort: 1, ToPort: 1, Group: webW.ID}})
	wantErr(t, "a group of another VPC", err, ErrInvalidGroup)
	_, err = fx.s.AuthorizeIngress(db.ID, []api.SecurityGroupRule{{Protocol: "tcp", FromPort: 1, ToPort: 1, Group: "sg-none"}})
	wantErr(t, "an unknown group", err, ErrGroupNotFound)
	for _, r := range []api.SecurityGroupRule{
		{Protocol: "tcp", FromPort: 20, ToPort: 10, CIDR: "0.0.0.0/0"},
		{Protocol: "udp", FromPort: 0, ToPort: 65536, CIDR: "0.0.0.0/0"},
		{Protocol: "tcp", FromPort: -1, ToPort: 22, CIDR: "0.0.0.0/0"},
		{Protocol: "icmp", FromPort: -1, ToPort: 0, CIDR: "0.0.0.0/0"},
		{Protocol: "icmp", FromPort: 256, ToPort: -1, CIDR: "0.0.0.0/0"},
		{Protocol: "all", FromPort: 22, ToPort: 22, CIDR: "0.0.0.0/0"},
		{Protocol: "gre", CIDR: "0.0.0.0/0"},
		{Protocol: "tcp", FromPort: 22, ToPort: 22},
		{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: "0.0.0.0/0", Group: web.ID},
		{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: "10.0.0.1/8"},
		{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: "::/0"},
	} {
		_, err := fx.s.AuthorizeEgress(db.ID, []api.SecurityGroupRule{r})
		wantErr(t, fmt.Sprintf("rule %+v", r), err, refusal.ErrInvalidParameter)
	}
	_, err = fx.s.AuthorizeIngress(db.ID, nil)
	wantErr(t, "no rules", err, refusal.ErrInvalidParameter)
	fx.unchanged("refused rule changes", before)
	// "-1" is all, and ports of all are ignored.
	if g, err := fx.s.AuthorizeIngress(web.ID, []api.SecurityGroupRule{{Protocol: "-1", CIDR: "10.0.0.0/8"}}); err != nil ||
		!slices.Contains(g.Ingress, api.SecurityGroupRule{Protocol: "all", FromPort: -1, ToPort: -1, CIDR: "10.0.0.0/8"}) {
		t.Errorf("protocol -1: %+v %v", g.Ingress, err)
	}
	// Revoke takes the rule as authorised, in any spelling that
	// normalises to it.
	g, err = fx.s.RevokeIngress(db.ID, []api.SecurityGroupRule{fromWeb})
	if err != nil || !slices.Equal(g.Ingress, []api.SecurityGroupRule{ssh}) {
		t.Fatalf("after revoke: %+v %v", g.Ingress, err)
	}
	g, err = fx.s.RevokeEgress(db.ID, []api.SecurityGroupRule{allEgress()})
	if err != nil || len(g.Egress) != 0 {
		t.Fatalf("revoking all egress: %+v %v", g.Egress, err)
	}
	// The rules limit.
	var many []api.SecurityGroupRule
	for i := range RulesPerDirection {
		many = append(many, api.SecurityGroupRule{Protocol: "tcp", FromPort: 1000 + i, ToPort: 1000 + i, CIDR: "0.0.0.0/0"})
	}
	_, err = fx.s.AuthorizeIngress(db.ID, many)
	wantErr(t, "past the rules limit", err, ErrLimitExceeded)

	// Deleting: not while an interface has it or another group's rule
	// names it; a default group only with its VPC.
	if _, err := fx.s.AuthorizeIngress(db.ID, []api.SecurityGroupRule{fromWeb}); err != nil {
		t.Fatal(err)
	}
	_, err = fx.s.DeleteSecurityGroup(web.ID)
	wantErr(t, "delete a group another names", err, ErrDependencyViolation)
	sn := fx.subnet(v.ID, "10.0.1.0/24")
	n := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, SecurityGroups: []string{db.ID}})
	_, err = fx.s.DeleteSecurityGroup(db.ID)
	wantErr(t, "delete a group in use", err, ErrDependencyViolation)
	_, err = fx.s.DeleteSecurityGroup(v.DefaultSecurityGroup)
	wantErr(t, "delete a default group", err, ErrCannotDelete)
	fx.s.DeleteInterface(n.ID)
	if _, err := fx.s.DeleteSecurityGroup(db.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.DeleteSecurityGroup(web.ID); err != nil {
		t.Fatalf("a group named only by deleted groups: %v", err)
	}
	// A name several VPCs use is not enough.
	fx.group(v.ID, "web")
	_, err = fx.s.DeleteSecurityGroup("web")
	wantErr(t, "an ambiguous name", err, ErrGroupNotFound)
	_, err = fx.s.ResolveGroup("default")
	wantErr(t, "default, every VPC's", err, ErrGroupNotFound)
}

func TestInterfaceGroups(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	w := fx.vpc("10.1.0.0/16")
	sn := fx.subnet(v.ID, "10.0.1.0/24")
	n := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	if !slices.Equal(n.SecurityGroups, []string{v.DefaultSecurityGroup}) || n.Status != api.InterfaceAvailable || n.Host != "host-a" || n.VPCID != v.ID {
		t.Errorf("an interface without groups: %+v", n)
	}
	a, b := fx.group(v.ID, "a"), fx.group(v.ID, "b")
	n = fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.Name, SecurityGroups: []string{"a", b.ID, a.ID}})
	if !slices.Equal(n.SecurityGroups, []string{a.ID, b.ID}) {
		t.Errorf("groups %v", n.SecurityGroups)
	}
	_, err := fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, SecurityGroups: []string{w.DefaultSecurityGroup}})
	wantErr(t, "another VPC's group", err, ErrInvalidGroup)
	_, err = fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, SecurityGroups: []string{"a", "b", "c", "d", "e", "f"}})
	wantErr(t, "six groups", err, ErrLimitExceeded)
	_, err = fx.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: "nope"})
	wantErr(t, "an unknown subnet", err, ErrSubnetNotFound)
}

func TestDeleteVPC(t *testing.T) {
	fx := newFixture(t)
	empty := fx.snapshot()
	v := fx.vpc("10.0.0.0/16")
	sn := fx.subnet(v.ID, "10.0.1.0/24")
	g := fx.group(v.ID, "web")
	_, err := fx.s.DeleteVPC(v.ID)
	wantErr(t, "a VPC with a subnet", err, ErrDependencyViolation)
	fx.s.DeleteSubnet(sn.ID)
	_, err = fx.s.DeleteVPC(v.ID)
	wantErr(t, "a VPC with a group", err, ErrDependencyViolation)
	fx.s.DeleteSecurityGroup(g.ID)
	if _, err := fx.s.DeleteVPC(v.Name); err != nil {
		t.Fatal(err)
	}
	// Nothing is left: no default group, no claim.
	fx.unchanged("a VPC made and deleted", empty)
	if _, err := fx.s.DeleteVPC(v.ID); !errors.Is(err, ErrVPCNotFound) {
		t.Errorf("deleting it again: %v", err)
	}
	// Its name is free.
	fx.s.CreateVPC(api.CreateVPCRequest{Name: v.Name, CIDR: "10.0.0.0/16"})
}

// Every committed change tells the subscribers, once, with its VPC;
// refusals and reads tell nobody.
func TestChangeHook(t *testing.T) {
	fx := newFixture(t)
	var mu sync.Mutex
	var got []string
	cancel := fx.s.Subscribe(func(id string) {
		mu.Lock()
		got = append(got, id)
		mu.Unlock()
	})
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		g := got
		got = nil
		return g
	}
	v := fx.vpc("10.0.0.0/16")
	sn := fx.subnet(v.ID, "10.0.1.0/24")
	g := fx.group(v.ID, "web")
	rule := []api.SecurityGroupRule{{Protocol: "tcp", FromPort: 80, ToPort: 80, CIDR: "0.0.0.0/0"}}
	fx.s.AuthorizeIngress(g.ID, rule)
	fx.s.RevokeIngress(g.ID, rule)
	n := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	on := true
	fx.s.ModifyVPC(v.ID, api.ModifyVPCRequest{HostGateway: &on})
	fx.s.RotateKey(v.ID)
	if g, want := take(), slices.Repeat([]string{v.ID}, 8); !slices.Equal(g, want) {
		t.Errorf("changes told %q, want %q", g, want)
	}
	fx.s.ModifyVPC(v.ID, api.ModifyVPCRequest{HostGateway: &on}) // no change
	fx.s.CreateSubnet(api.CreateSubnetRequest{VPC: v.ID, CIDR: "10.0.1.0/24"})
	fx.s.RevokeIngress(g.ID, rule)
	fx.s.Mapping(v.ID)
	fx.s.ListSecurityGroups("")
	if g := take(); len(g) != 0 {
		t.Errorf("refusals and reads told %q", g)
	}
	fx.s.DeleteInterface(n.ID)
	fx.s.DeleteSubnet(sn.ID)
	fx.s.DeleteSecurityGroup(g.ID)
	fx.s.DeleteVPC(v.ID)
	if g, want := take(), slices.Repeat([]string{v.ID}, 4); !slices.Equal(g, want) {
		t.Errorf("deletions told %q, want %q", g, want)
	}
	cancel()
	fx.vpc("10.0.0.0/16")
	if g := take(); len(g) != 0 {
		t.Errorf("told %q after cancel", g)
	}
}

// A VPC's key is 32 random bytes stored only wrapped; a rotation keeps
// the previous epoch until the next one ends; a wrapped key opens only
// for its VPC and epoch; the host gateway's turning on is audited.
func TestKeys(t *testing.T) {
	fx := newFixture(t)
	v, err := fx.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.0.0.0/16", HostGateway: true})
	if err != nil {
		t.Fatal(err)
	}
	w := fx.vpc("10.0.0.0/16")
	plain := func(id string) map[uint32][]byte { return fx.plainKeys(id, nil) }
	k1 := plain(v.ID)
	if len(k1) != 1 || k1[1] == nil || bytes.Equal(k1[1], make([]byte, KeyBytes)) || bytes.Equal(k1[1], plain(w.ID)[1]) {
		t.Fatalf("keys of a new VPC: %d", len(k1))
	}
	raw := fx.snapshot()
	for k, r := range raw {
		if strings.Contains(r, string(k1[1])) || strings.Contains(r, fmt.Sprintf("%x", k1[1])) {
			t.Fatalf("%s holds the plaintext key", k)
		}
	}
	// No card serves the VPC: a rotation has no one to wait for.
	r, err := fx.s.RotateKey(v.ID)
	if err != nil || r.KeyEpoch != 2 || r.NextKeyEpoch != 0 || r.KeyRotatedAt == nil {
		t.Fatalf("rotate: %+v %v", r, err)
	}
	k2 := plain(v.ID)
	if len(k2) != 2 || !bytes.Equal(k2[1], k1[1]) || bytes.Equal(k2[2], k1[1]) {
		t.Fatalf("after a rotation: epochs %d", len(k2))
	}
	fx.s.RotateKey(v.ID)
	k3 := plain(v.ID)
	if len(k3) != 2 || k3[1] != nil || !bytes.Equal(k3[2], k2[2]) || k3[3] == nil {
		t.Fatalf("after a second rotation: %d keys", len(k3))
	}
	// A wrapped key moved to another VPC does not open.
	rv, _ := fx.s.ResolveVPC(v.ID)
	fx.db.Update(func(tx store.Tx) error {
		var rw VPCRecord
		tx.Get(VPCTable, w.ID, &rw)
		rw.Keys = []WrappedKey{{Epoch: 3, Wrapped: rv.Keys[0].Wrapped}}
		return tx.Put(VPCTable, w.ID, &rw)
	})
	if _, err := fx.s.Keys(w.ID); !errors.Is(err, keys.ErrUnwrap) {
		t.Errorf("another VPC's wrapped key: %v", err)
	}
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if !slices.Contains(fx.events, "HostGatewayEnabled vpc/"+v.ID) || !slices.Contains(fx.events, "VpcKeyUse vpc/"+v.ID) {
		t.Errorf("events %q", fx.events)
	}
}

// plainKeys returns the plaintext keys of VPC id by epoch, checking that
// they come oldest first, and appends the epochs marked Next to next.
func (fx *fixture) plainKeys(id string, next *[]uint32) map[uint32][]byte {
	t := fx.t
	t.Helper()
	ks, err := fx.s.Keys(id)
	if err != nil {
		t.Fatal(err)
	}
	defer FreeKeys(ks)
	out := map[uint32][]byte{}
	var order []uint32
	for _, k := range ks {
		if k.Key.Len() != KeyBytes {
			t.Fatalf("a key of %d bytes", k.Key.Len())
		}
		out[k.Epoch] = bytes.Clone(k.Key.Bytes())
		order = append(order, k.Epoch)
		if k.Next && next != nil {
			*next = append(*next, k.Epoch)
		}
	}
	if !slices.IsSorted(order) {
		t.Errorf("epochs %v not oldest first", order)
	}
	return out
}

// A rotation of a VPC whose cards run: the new key is next until the card
// of every interface that has one has recorded that it holds it, then
// current; asked again meanwhile it changes nothing; a card gone no
// longer holds it up; past its grace it ends without the laggards.
func TestKeyRotation(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	sn := fx.subnet(v.ID, "10.0.1.0/24")
	a := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	b := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID}) // no card: not waited for
	for i, n := range []api.NetworkInterface{a, b} {
		if err := fx.s.SetUnderlay(n.ID, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(4000+i))); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var told []string
	cancel := fx.s.Subscribe(func(id string) { mu.Lock(); told = append(told, id); mu.Unlock() })
	defer cancel()
	take := func() int { mu.Lock(); defer mu.Unlock(); n := len(told); told = nil; return n }
	accept := func(n api.NetworkInterface, e uint32) {
		t.Helper()
		if err := fx.s.KeyAccepted(n.ID, e); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, wantCur, wantNext uint32, wantEpochs []uint32, wantTold int) {
		t.Helper()
		var next []uint32
		var epochs []uint32
		for e := range fx.plainKeys(v.ID, &next) {
			epochs = append(epochs, e)
		}
		slices.Sort(epochs)
		m, err := fx.s.Mapping(v.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.KeyEpoch != wantCur || m.NextKeyEpoch != wantNext || !slices.Equal(epochs, wantEpochs) {
			t.Fatalf("%s: current %d, next %d, keys %v; want %d, %d, %v", what, m.KeyEpoch, m.NextKeyEpoch, epochs, wantCur, wantNext, wantEpochs)
		}
		if wantNext != 0 && !slices.Equal(next, []uint32{wantNext}) || wantNext == 0 && len(next) != 0 {
			t.Fatalf("%s: keys marked next %v", what, next)
		}
		if n := take(); n != wantTold {
			t.Fatalf("%s: told the cards %d times, want %d", what, n, wantTold)
		}
	}

	r, err := fx.s.RotateKey(v.ID)
	if err != nil || r.KeyEpoch != 1 || r.NextKeyEpoch != 2 {
		t.Fatalf("rotate: %+v %v", r, err)
	}
	check("rotation asked", 1, 2, []uint32{1, 2}, 1)
	before := fx.plainKeys(v.ID, nil)
	if r, err := fx.s.RotateKey(v.ID); err != nil || r.KeyEpoch != 1 || r.NextKeyEpoch != 2 {
		t.Fatalf("rotate during a rotation: %+v %v", r, err)
	}
	check("asked again", 1, 2, []uint32{1, 2}, 0)
	if !bytes.Equal(fx.plainKeys(v.ID, nil)[2], before[2]) {
		t.Fatal("asking again changed the next key")
	}
	accept(a, 2)
	accept(a, 2)
	accept(b, 1) // a state read before the rotation
	check("one card has it", 1, 2, []uint32{1, 2}, 0)
	if wait, err := fx.s.PromoteDue(v.ID); err != nil || wait <= 0 {
		t.Fatalf("promote within the grace: %v left, %v", wait, err)
	}
	check("within the grace", 1, 2, []uint32{1, 2}, 0)
	accept(b, 2)
	check("every card has it", 2, 0, []uint32{1, 2}, 1)

	// The next rotation forgets epoch 1 when it ends, and does not wait
	// for a card that is gone.
	fx.s.RotateKey(v.ID)
	check("second rotation asked", 2, 3, []uint32{1, 2, 3}, 1)
	accept(a, 3)
	check("one card has it", 2, 3, []uint32{1, 2, 3}, 0)
	if err := fx.s.SetUnderlay(b.ID, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	check("the other card gone", 3, 0, []uint32{2, 3}, 1)
	accept(b, 3) // a card gone records nothing
	if err := fx.s.SetUnderlay(b.ID, netip.MustParseAddrPort("192.0.2.1:4009")); err != nil {
		t.Fatal(err)
	}
	take()

	// A card that never records the next key holds the rotation up to
	// its grace, then no more: PromoteDue ends it, and so does the next
	// rotation asked.
	past := func() {
		t.Helper()
		err := fx.db.Update(func(tx store.Tx) error {
			var rv VPCRecord
			if err := tx.Get(VPCTable, v.ID, &rv); err != nil {
				return err
			}
			at := rv.KeyRotatedAt.Add(-DefaultRotationGrace)
			rv.KeyRotatedAt = &at
			return tx.Put(VPCTable, v.ID, &rv)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fx.s.RotateKey(v.ID)
	accept(a, 4)
	check("b restarted holds nothing", 3, 4, []uint32{2, 3, 4}, 1)
	past()
	if wait, err := fx.s.PromoteDue(v.ID); err != nil || wait != 0 {
		t.Fatalf("promote past the grace: %v left, %v", wait, err)
	}
	check("past the grace", 4, 0, []uint32{3, 4}, 1)
	if wait, err := fx.s.PromoteDue(v.ID); err != nil || wait != 0 {
		t.Fatalf("promote with no rotation: %v left, %v", wait, err)
	}
	fx.s.RotateKey(v.ID)
	past()
	if r, err := fx.s.RotateKey(v.ID); err != nil || r.KeyEpoch != 5 || r.NextKeyEpoch != 6 {
		t.Fatalf("rotate past the grace: %+v %v", r, err)
	}
	check("rotated past the grace", 5, 6, []uint32{4, 5, 6}, 2)
}

// The instance owner's seam: an interface made attached, attached at the
// lowest free index, the primary kept, and at the instance's end the
// primary deleted and the others detached.
func TestInstanceSeam(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	sn := fx.subnet(v.ID, "10.0.1.0/24")
	var primary InterfaceRecord
	err := fx.db.Update(func(tx store.Tx) (err error) {
		primary, err = fx.s.CreateInterfaceTx(tx, api.CreateNetworkInterfaceRequest{Subnet: sn.ID, PrivateIP: "10.0.1.20"},
			&api.NetworkInterfaceAttachment{InstanceID: "i-1", DeviceIndex: 0, DeleteOnTermination: true})
		return err
	})
	if err != nil || primary.Status != api.InterfaceInUse || primary.Attachment.InstanceID != "i-1" {
		t.Fatalf("primary: %+v %v", primary, err)
	}
	extra := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	var got InterfaceRecord
	if err := fx.db.Update(func(tx store.Tx) (err error) { got, err = fx.s.AttachTx(tx, extra.ID, "i-1", nil); return }); err != nil || got.Attachment.DeviceIndex != 1 {
		t.Fatalf("attach: %+v %v", got.Attachment, err)
	}
	err = fx.db.Update(func(tx store.Tx) error { _, err := fx.s.AttachTx(tx, extra.ID, "i-2", nil); return err })
	wantErr(t, "attach an attached interface", err, ErrInterfaceInUse)
	_, err = fx.s.DeleteInterface(extra.ID)
	wantErr(t, "delete an attached interface", err, ErrInterfaceInUse)
	third := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	zero := 0
	err = fx.db.Update(func(tx store.Tx) error { _, err := fx.s.AttachTx(tx, third.ID, "i-1", &zero); return err })
	wantErr(t, "a device index in use", err, refusal.ErrInvalidParameter)
	err = fx.db.Update(func(tx store.Tx) error { _, err := DetachTx(tx, primary.ID, "i-1"); return err })
	wantErr(t, "detach the primary", err, ErrOperationNotPermitted)
	err = fx.db.Update(func(tx store.Tx) error { _, err := DetachTx(tx, third.ID, "i-1"); return err })
	wantErr(t, "detach an interface not attached", err, ErrIncorrectInterfaceState)
	if ifs, err := fx.s.InstanceInterfaces("i-1"); err != nil || len(ifs) != 2 || ifs[0].ID != primary.ID || ifs[1].ID != extra.ID {
		t.Fatalf("instance interfaces: %+v %v", ifs, err)
	}
	// The end: the primary goes, the other stays, detached.
	var vpcIDs []string
	err = fx.db.Update(func(tx store.Tx) error {
		for _, id := range []string{primary.ID, extra.ID, "eni-gone"} {
			vid, err := EndTx(tx, id, "i-1")
			if err != nil {
				return err
			}
			vpcIDs = append(vpcIDs, vid)
		}
		return nil
	})
	if err != nil || !slices.Equal(vpcIDs, []string{v.ID, v.ID, ""}) {
		t.Fatalf("end: %v %v", vpcIDs, err)
	}
	if _, err := fx.s.ResolveInterface(primary.ID); !errors.Is(err, ErrInterfaceNotFound) {
		t.Errorf("the primary after its instance ended: %v", err)
	}
	if n, _ := fx.s.ResolveInterface(extra.ID); n.Attachment != nil || n.Status != api.InterfaceAvailable {
		t.Errorf("the other after its instance ended: %+v", n)
	}
	// The primary's address is free again.
	if n := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: sn.ID, PrivateIP: "10.0.1.20"}); n.PrivateIP != "10.0.1.20" {
		t.Error(n.PrivateIP)
	}
}

// The read side: a VPC's mapping, an interface's effective rules.
func TestReadSide(t *testing.T) {
	fx := newFixture(t)
	v := fx.vpc("10.0.0.0/16")
	a := fx.subnet(v.ID, "10.0.1.0/24")
	b := fx.subnet(v.ID, "10.0.2.0/24")
	web := fx.group(v.ID, "web")
	fx.s.AuthorizeIngress(web.ID, []api.SecurityGroupRule{
		{Protocol: "tcp", FromPort: 80, ToPort: 80, CIDR: "0.0.0.0/0"},
		{Protocol: "icmp", FromPort: -1, ToPort: -1, Group: v.DefaultSecurityGroup},
	})
	n1 := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: a.ID})
	n2 := fx.eni(api.CreateNetworkInterfaceRequest{Subnet: b.ID, SecurityGroups: []string{web.ID, v.DefaultSecurityGroup}})
	m, err := fx.s.Mapping(v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.NumericID != v.NumericID || m.KeyEpoch != 1 || m.CIDR.String() != "10.0.0.0/16" || len(m.Subnets) != 2 || len(m.Endpoints) != 2 {
		t.Fatalf("mapping %+v", m)
	}
	if s := m.Subnets[1]; s.ID != b.ID || s.Prefix.String() != "10.0.2.0/24" || s.Gateway.String() != "10.0.2.1" {
		t.Errorf("subnet %+v", s)
	}
	e := m.Endpoints[1]
	if e.InterfaceID != n2.ID || e.NumericID != n2.NumericID || e.IP.String() != "10.0.2.4" || e.MAC.String() != n2.MAC || e.Host != "host-a" || e.SubnetID != b.ID ||
		!slices.Equal(e.Groups, []string{web.ID, v.DefaultSecurityGroup}) {
		t.Errorf("endpoint %+v", e)
	}
	rev := m.Revision
	fx.s.RevokeIngress(web.ID, []api.SecurityGroupRule{{Protocol: "tcp", FromPort: 80, ToPort: 80, CIDR: "0.0.0.0/0"}})
	if m, _ := fx.s.Mapping(v.ID); m.Revision <= rev {
		t.Errorf("revision %d after a change, %d before", m.Revision, rev)
	}
	r, err := fx.s.EffectiveRules(n2.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantIn := []Rule{
		{Protocol: "icmp", FromPort: -1, ToPort: -1, Group: v.DefaultSecurityGroup},
		{Protocol: "all", FromPort: -1, ToPort: -1, Group: v.DefaultSecurityGroup},
	}
	wantOut := []Rule{{Protocol: "all", FromPort: -1, ToPort: -1, Prefix: netip.MustParsePrefix("0.0.0.0/0")}}
	if !slices.Equal(r.Ingress, wantIn) || !slices.Equal(r.Egress, wantOut) {
		t.Errorf("rules of %s:\n in %+v\nout %+v", n2.ID, r.Ingress, r.Egress)
	}
	if r, _ := fx.s.EffectiveRules(n1.ID); len(r.Ingress) != 1 || r.Ingress[0].Group != v.DefaultSecurityGroup {
		t.Errorf("rules of the default group: %+v", r)
	}
	if hv, _ := fx.s.VPCsOnHost(""); !slices.Equal(hv, []string{v.ID}) {
		t.Errorf("VPCs on this host: %v", hv)
	}
	if _, err := fx.s.Mapping("vpc-none"); !errors.Is(err, ErrVPCNotFound) {
		t.Errorf("mapping of no VPC: %v", err)
	}
}
