package vpcs

import (
	"slices"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// The host gateway's interface: made once the VPC has the gateway on and
// a subnet, in its lowest subnet, one per host, audited; no user may
// attach or delete it; it goes with its subnet and when the gateway is
// turned off; two gateways into overlapping blocks are refused with
// nothing changed.
func TestHostGatewayInterface(t *testing.T) {
	fx := newFixture(t)
	v, err := fx.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.0.0.0/16", HostGateway: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := fx.s.HostGateway(v.ID); ok || err != nil {
		t.Fatalf("a VPC without subnets: ok %v, err %v", ok, err)
	}
	high := fx.subnet(v.ID, "10.0.2.0/24")
	low := fx.subnet(v.ID, "10.0.1.0/24")
	n, ok, err := fx.s.HostGateway(v.ID)
	if !ok || err != nil {
		t.Fatalf("ok %v, err %v", ok, err)
	}
	if n.Type != api.InterfaceTypeHostGateway || n.SubnetID != low.ID || n.PrivateIP != "10.0.1.4" || n.Host != "host-a" ||
		n.Status != api.InterfaceInUse || n.Attachment != nil || !slices.Equal(n.SecurityGroups, []string{v.DefaultSecurityGroup}) {
		t.Fatalf("host gateway interface %+v", n.NetworkInterface)
	}
	if !slices.Contains(fx.events, "HostGatewayInterfaceCreated vpc/"+v.ID) {
		t.Errorf("not audited: %q", fx.events)
	}
	if again, _, _ := fx.s.HostGateway(v.ID); again.ID != n.ID {
		t.Fatalf("a second interface %s for the same host", again.ID)
	}
	m, _ := fx.s.Mapping(v.ID)
	if len(m.Endpoints) != 1 || m.Endpoints[0].InterfaceID != n.ID {
		t.Fatalf("mapping %+v", m.Endpoints)
	}

	before := fx.snapshot()
	_, err = fx.s.DeleteInterface(n.ID)
	wantErr(t, "deleting the host gateway's interface", err, ErrOperationNotPermitted)
	err = fx.db.Update(func(tx store.Tx) error { _, err := fx.s.AttachTx(tx, n.ID, "i-0123456789abcdef0", nil); return err })
	wantErr(t, "attaching the host gateway's interface", err, ErrOperationNotPermitted)
	_, err = fx.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.0.128.0/17", HostGateway: true})
	wantErr(t, "a second host gateway into an overlapping block", err, ErrHostGatewayConflict)
	w := fx.vpc("10.0.0.0/16")
	on := true
	after := fx.snapshot()
	_, err = fx.s.ModifyVPC(w.ID, api.ModifyVPCRequest{HostGateway: &on})
	wantErr(t, "turning on an overlapping host gateway", err, ErrHostGatewayConflict)
	fx.unchanged("a refused modify", after)
	if _, err := fx.s.DeleteVPC(w.ID); err != nil {
		t.Fatal(err)
	}
	fx.unchanged("refusals", before)

	// Its subnet goes: so does it, and the next one is in the other.
	if _, err := fx.s.DeleteSubnet(low.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.ResolveInterface(n.ID); err == nil {
		t.Fatal("the interface outlived its subnet")
	}
	n2, ok, err := fx.s.HostGateway(v.ID)
	if !ok || err != nil || n2.SubnetID != high.ID || n2.PrivateIP != "10.0.2.4" {
		t.Fatalf("after the subnet went: %+v, %v, %v", n2.NetworkInterface, ok, err)
	}
	off := false
	if _, err := fx.s.ModifyVPC(v.ID, api.ModifyVPCRequest{HostGateway: &off}); err != nil {
		t.Fatal(err)
	}
	if l, _ := fx.s.HostGatewayInterfaces(); len(l) != 0 {
		t.Fatalf("turned off, and still %d interfaces", len(l))
	}
	if _, ok, _ := fx.s.HostGateway(v.ID); ok {
		t.Fatal("turned off, and one is made")
	}
	// Its address, MAC and number were given back: the subnet is whole.
	if s, _ := fx.s.DescribeSubnet(high.ID); s.AvailableAddresses != 251 {
		t.Errorf("%d addresses free, want 251", s.AvailableAddresses)
	}
	if _, err := fx.s.DeleteSubnet(high.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.DeleteVPC(v.ID); err != nil {
		t.Fatal(err)
	}
}
