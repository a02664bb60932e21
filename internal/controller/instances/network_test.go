package instances

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/vpcs"
)

// netFixture is a VPC with a subnet and a group "web", and a record of
// the VPCs the network owner told about.
type netFixture struct {
	*fixture
	vpc    api.VPC
	subnet api.Subnet
	web    api.SecurityGroup
	mu     sync.Mutex
	told   []string
}

func newNetFixture(t *testing.T) *netFixture { return newNetFixtureOf(t, &fixture{}) }

// newNetFixtureGrace is newNetFixture with a key rotation's grace (the
// default if 0).
func newNetFixtureGrace(t *testing.T, grace time.Duration) *netFixture {
	return newNetFixtureOf(t, &fixture{grace: grace})
}

// newNetFixtureWith is newNetFixture, with the network's records in a
// store of their own when separate is set.
func newNetFixtureWith(t *testing.T, separate bool) *netFixture {
	return newNetFixtureOf(t, &fixture{separate: separate})
}

// newNetFixtureOf is newNetFixture with base's options.
func newNetFixtureOf(t *testing.T, base *fixture) *netFixture {
	fx := &netFixture{fixture: newFixtureOf(t, base)}
	var err error
	if fx.vpc, err = fx.nets.CreateVPC(api.CreateVPCRequest{Name: "prod", CIDR: "10.0.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if fx.subnet, err = fx.nets.CreateSubnet(api.CreateSubnetRequest{VPC: fx.vpc.ID, Name: "front", CIDR: "10.0.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	if fx.web, err = fx.nets.CreateSecurityGroup(api.CreateSecurityGroupRequest{VPC: fx.vpc.ID, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	cancel := fx.nets.Subscribe(func(id string) {
		fx.mu.Lock()
		fx.told = append(fx.told, id)
		fx.mu.Unlock()
	})
	t.Cleanup(cancel)
	return fx
}

func (fx *netFixture) takeTold() []string {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	t := fx.told
	fx.told = nil
	return t
}

func (fx *netFixture) interfaces() []api.NetworkInterface {
	fx.t.Helper()
	l, err := fx.nets.ListInterfaces("")
	if err != nil {
		fx.t.Fatal(err)
	}
	return l
}

// A launch with a subnet makes its primary interface with the instance;
// terminating the instance deletes it and detaches any other.
func TestRunWithSubnet(t *testing.T) {
	fx := newNetFixture(t)
	ctx := context.Background()
	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "web", Image: "default", VCPUs: 1, MemoryMiB: 64,
		Subnet: "front", SecurityGroups: []string{"web"}, PrivateIP: "10.0.1.10"})
	if err != nil {
		t.Fatal(err)
	}
	if inst.PrivateIP != "10.0.1.10" || len(inst.NetworkInterfaces) != 1 {
		t.Fatalf("launched %+v", inst)
	}
	ni := inst.NetworkInterfaces[0]
	if ni.DeviceIndex != 0 || ni.SubnetID != fx.subnet.ID || ni.VPCID != fx.vpc.ID || ni.PrivateIP != "10.0.1.10" || ni.MAC == "" {
		t.Errorf("primary interface %+v", ni)
	}
	got, err := fx.nets.InstanceInterfaces(inst.ID)
	if err != nil || len(got) != 1 || got[0].ID != ni.ID || !got[0].Attachment.DeleteOnTermination ||
		!slices.Equal(got[0].SecurityGroups, []string{fx.web.ID}) || got[0].Host != "host-a" {
		t.Fatalf("interfaces of %s: %+v %v", inst.ID, got, err)
	}
	// The launch's transaction, then the card recording where it
	// receives: the VPC's cards hear of both.
	if told := fx.takeTold(); len(told) == 0 || !slices.Equal(slices.Compact(told), []string{fx.vpc.ID}) {
		t.Errorf("the launch told %q", told)
	}
	fx.waitState(inst.ID, api.StateRunning)
	// A running instance gets no interface.
	extra, err := fx.nets.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: fx.subnet.ID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = fx.s.AttachInterface(ctx, extra.ID, api.AttachNetworkInterfaceRequest{Instance: "web"})
	if !errors.Is(err, ErrIncorrectState) {
		t.Fatalf("attach to a running instance: %v", err)
	}
	if _, err := fx.s.Stop(ctx, inst.ID, api.StopInstanceRequest{}); err != nil {
		t.Fatal(err)
	}
	fx.takeTold()
	n, err := fx.s.AttachInterface(ctx, extra.ID, api.AttachNetworkInterfaceRequest{Instance: "web"})
	if err != nil || n.Attachment == nil || n.Attachment.DeviceIndex != 1 || n.Attachment.DeleteOnTermination {
		t.Fatalf("attach to a stopped instance: %+v %v", n.Attachment, err)
	}
	if d, _ := fx.s.Describe(ctx, inst.ID, 0, 0); len(d.NetworkInterfaces) != 2 || d.NetworkInterfaces[1].ID != extra.ID || d.PrivateIP != "10.0.1.10" {
		t.Errorf("after attach: %+v", d.NetworkInterfaces)
	}
	_, err = fx.s.DetachInterface(ctx, ni.ID)
	if !errors.Is(err, vpcs.ErrOperationNotPermitted) {
		t.Errorf("detaching the primary: %v", err)
	}
	if _, err := fx.s.DetachInterface(ctx, extra.ID); err != nil {
		t.Fatal(err)
	}
	if d, _ := fx.s.Describe(ctx, inst.ID, 0, 0); len(d.NetworkInterfaces) != 1 {
		t.Errorf("after detach: %+v", d.NetworkInterfaces)
	}
	_, err = fx.s.DetachInterface(ctx, extra.ID)
	if !errors.Is(err, vpcs.ErrIncorrectInterfaceState) {
		t.Errorf("detaching a detached interface: %v", err)
	}
	if _, err := fx.s.AttachInterface(ctx, extra.ID, api.AttachNetworkInterfaceRequest{Instance: inst.ID}); err != nil {
		t.Fatal(err)
	}
	if told := fx.takeTold(); !slices.Equal(told, []string{fx.vpc.ID, fx.vpc.ID, fx.vpc.ID}) {
		t.Errorf("attach, detach, attach told %q", told)
	}
	// The end: the primary goes (its address is free), the other stays.
	term, err := fx.s.Terminate(ctx, inst.ID)
	if err != nil || term.State != api.StateTerminated || len(term.NetworkInterfaces) != 0 || term.PrivateIP != "" {
		t.Fatalf("terminated: %+v %v", term, err)
	}
	l := fx.interfaces()
	if len(l) != 1 || l[0].ID != extra.ID || l[0].Attachment != nil || l[0].Status != api.InterfaceAvailable {
		t.Errorf("interfaces after terminate: %+v", l)
	}
	if told := fx.takeTold(); !slices.Contains(told, fx.vpc.ID) {
		t.Errorf("terminate told %q", told)
	}
	if n, err := fx.nets.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: fx.subnet.ID, PrivateIP: "10.0.1.10"}); err != nil || n.PrivateIP != "10.0.1.10" {
		t.Errorf("the primary's address after terminate: %v", err)
	}
}

// A launch refused for its network, or whose machine fails to start,
// leaves no instance and no interface; without a subnet a launch has no
// network, and network options without one are refused.
func TestRunNetworkRefusals(t *testing.T) {
	fx := newNetFixture(t)
	ctx := context.Background()
	other, err := fx.nets.CreateVPC(api.CreateVPCRequest{CIDR: "10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	taken, err := fx.nets.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: fx.subnet.ID, PrivateIP: "10.0.1.7"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(r api.RunInstanceRequest) error {
		r.Image, r.VCPUs, r.MemoryMiB = "default", 1, 64
		_, err := fx.s.Run(ctx, r)
		return err
	}
	for _, tc := range []struct {
		name string
		req  api.RunInstanceRequest
		kind error
	}{
		{"address in use", api.RunInstanceRequest{Name: "a", Subnet: fx.subnet.ID, PrivateIP: "10.0.1.7"}, vpcs.ErrAddressInUse},
		{"address outside", api.RunInstanceRequest{Name: "a", Subnet: fx.subnet.ID, PrivateIP: "10.0.2.7"}, vpcs.ErrAddressNotInSubnet},
		{"another VPC's group", api.RunInstanceRequest{Name: "a", Subnet: fx.subnet.ID, SecurityGroups: []string{other.DefaultSecurityGroup}}, vpcs.ErrInvalidGroup},
		{"no subnet", api.RunInstanceRequest{Name: "a", Subnet: "nope"}, vpcs.ErrSubnetNotFound},
		{"groups without a subnet", api.RunInstanceRequest{Name: "a", SecurityGroups: []string{"web"}}, refusal.ErrInvalidParameter},
	} {
		if err := run(tc.req); !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.kind)
		}
	}
	fx.eng.FailNext(errors.New("no machine today"))
	if err := run(api.RunInstanceRequest{Name: "a", Subnet: fx.subnet.ID}); !errors.Is(err, ErrEngine) {
		t.Fatalf("a launch that fails: %v", err)
	}
	if l, _ := fx.s.List(ctx); len(l) != 0 {
		t.Errorf("refused launches left instances %+v", l)
	}
	if l := fx.interfaces(); len(l) != 1 || l[0].ID != taken.ID {
		t.Errorf("refused launches left interfaces %+v", l)
	}
	// The failed launch's address (the lowest free) is free again.
	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "b", Image: "default", VCPUs: 1, MemoryMiB: 64, Subnet: fx.subnet.ID})
	if err != nil || inst.PrivateIP != "10.0.1.4" || inst.NetworkInterfaces[0].DeviceIndex != 0 {
		t.Fatalf("launch after refusals: %+v %v", inst, err)
	}
	plain, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "c", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil || plain.PrivateIP != "" || plain.NetworkInterfaces != nil {
		t.Fatalf("a launch without a subnet: %+v %v", plain, err)
	}
	if ifs, _ := fx.nets.InstanceInterfaces(plain.ID); len(ifs) != 0 {
		t.Errorf("a launch without a subnet has interfaces %+v", ifs)
	}
}

// With the network's records in a store of their own (a fleet's), an
// instance and its interfaces change in two transactions: a launch
// refused by the instance's store ends the interface it made; interfaces
// a crash left attached here to instances that are gone are ended at
// start-up, those of another host never; and an attachment the instance
// record missed is taken up at its next launch.
// (Short names: the cards' socket paths hold them.)
func TestNetStores(t *testing.T) {
	t.Run("one", func(t *testing.T) { testNetStores(t, false) })
	t.Run("two", func(t *testing.T) { testNetStores(t, true) })
}

func testNetStores(t *testing.T, separate bool) {
	fx := newNetFixtureWith(t, separate)
	ctx := context.Background()
	web, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "web", Image: "default", VCPUs: 1, MemoryMiB: 64, Subnet: fx.subnet.ID})
	if err != nil {
		t.Fatal(err)
	}
	// Refused by the instance's own store, after its interface was made.
	_, err = fx.s.Run(ctx, api.RunInstanceRequest{Name: "web", Image: "default", VCPUs: 1, MemoryMiB: 64, Subnet: fx.subnet.ID})
	if !errors.Is(err, refusal.ErrNameInUse) {
		t.Fatalf("a second instance named web: %v", err)
	}
	if l := fx.interfaces(); len(l) != 1 || l[0].ID != web.NetworkInterfaces[0].ID {
		t.Errorf("a refused launch left interfaces %+v", l)
	}
	// What a crash between the two transactions leaves: an interface
	// attached here to an instance with no record; and one attached on
	// another host, whose instances this host does not know.
	gone, err := fx.nets.CreateAttached(api.CreateNetworkInterfaceRequest{Subnet: fx.subnet.ID},
		api.NetworkInterfaceAttachment{InstanceID: "i-gone", DeleteOnTermination: true})
	if err != nil {
		t.Fatal(err)
	}
	other := vpcs.New(vpcs.Config{Store: fx.netStore(), HostID: "host-b"})
	elsewhere, err := other.CreateAttached(api.CreateNetworkInterfaceRequest{Subnet: fx.subnet.ID},
		api.NetworkInterfaceAttachment{InstanceID: "i-elsewhere", DeleteOnTermination: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.Stop(ctx, web.ID, api.StopInstanceRequest{}); err != nil {
		t.Fatal(err)
	}
	// An attachment made in the network's store alone.
	spare, err := fx.nets.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: fx.subnet.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.nets.Attach(spare.ID, web.ID, nil); err != nil {
		t.Fatal(err)
	}
	fx.close()
	fx.start()
	ids := map[string]bool{}
	for _, n := range fx.interfaces() {
		ids[n.ID] = true
	}
	if ids[gone.ID] || !ids[elsewhere.ID] || !ids[web.NetworkInterfaces[0].ID] || !ids[spare.ID] {
		t.Errorf("after the start-up sweep: %v; want %s gone, %s (another host's), %s and %s kept",
			ids, gone.ID, elsewhere.ID, web.NetworkInterfaces[0].ID, spare.ID)
	}
	started, err := fx.s.Start(ctx, web.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(started.NetworkInterfaces) != 2 || started.NetworkInterfaces[1].ID != spare.ID {
		t.Errorf("the launch did not take up the attachment: %+v", started.NetworkInterfaces)
	}
}
