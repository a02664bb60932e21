package controller

import (
	"context"
	"slices"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/gateway"
)

// The façade wires the network owner to the instance owner and to the
// gateway: names resolve to ids for every network kind, a launch into a
// subnet gets its interface, rules go to the direction asked, and the
// owners' refusals reach the wire with their codes.
func TestNetworkFacade(t *testing.T) {
	fx := newFixture(t)
	c := fx.c
	ctx := context.Background()
	var told []string
	c.vpcs.Subscribe(func(id string) { told = append(told, id) })
	v, err := c.CreateVPC(ctx, api.CreateVPCRequest{Name: "prod", CIDR: "10.0.0.0/16", Tags: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := c.CreateSubnet(ctx, api.CreateSubnetRequest{VPC: v.ID, Name: "front", CIDR: "10.0.1.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.CreateSecurityGroup(ctx, api.CreateSecurityGroupRequest{VPC: v.ID, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ kind, ref, id string }{
		{"vpc", "prod", v.ID}, {"subnet", "front", sn.ID}, {"security-group", "web", g.ID}, {"security-group", v.DefaultSecurityGroup, v.DefaultSecurityGroup},
	} {
		id, tags, ok := c.ResolveID(ctx, tc.kind, tc.ref)
		if !ok || id != tc.id || (tc.kind == "vpc" && tags["team"] != "a") {
			t.Errorf("ResolveID(%s, %s) = %s %v %v", tc.kind, tc.ref, id, tags, ok)
		}
	}
	if _, _, ok := c.ResolveID(ctx, "network-interface", "nope"); ok {
		t.Error("an unknown interface resolved")
	}

	rule := api.SecurityGroupRule{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: "0.0.0.0/0"}
	if g, err = c.SecurityGroupRules(ctx, g.ID, "ingress", true, api.SecurityGroupRulesRequest{Rules: []api.SecurityGroupRule{rule}}); err != nil || !slices.Equal(g.Ingress, []api.SecurityGroupRule{rule}) {
		t.Fatalf("authorize ingress: %+v %v", g.Ingress, err)
	}
	if g, err = c.SecurityGroupRules(ctx, g.ID, "egress", false, api.SecurityGroupRulesRequest{Rules: g.Egress}); err != nil || len(g.Egress) != 0 || len(g.Ingress) != 1 {
		t.Fatalf("revoke egress: %+v %v", g, err)
	}
	_, err = c.SecurityGroupRules(ctx, g.ID, "ingress", true, api.SecurityGroupRulesRequest{Rules: []api.SecurityGroupRule{rule}})
	if e := gateway.WireError(err); e.Code != api.CodeDuplicateRule || e.Status() != 409 {
		t.Errorf("a duplicate rule answers %+v", e)
	}

	inst, err := c.RunInstance(ctx, api.RunInstanceRequest{Name: "web", Image: "default", VCPUs: 1, MemoryMiB: 64, Subnet: sn.ID, SecurityGroups: []string{g.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if inst.PrivateIP != "10.0.1.4" || len(inst.NetworkInterfaces) != 1 {
		t.Fatalf("launched into a subnet: %+v", inst)
	}
	eni := inst.NetworkInterfaces[0].ID
	if id, _, ok := c.ResolveID(ctx, "network-interface", eni); !ok || id != eni {
		t.Errorf("ResolveID of the primary interface: %v", ok)
	}
	if l, _ := c.ListInstances(ctx); len(l) != 1 || l[0].PrivateIP != "10.0.1.4" {
		t.Errorf("list: %+v", l)
	}
	_, err = c.DeleteVPC(ctx, v.ID)
	if e := gateway.WireError(err); e.Code != api.CodeDependencyViolation {
		t.Errorf("deleting a VPC in use answers %+v", e)
	}
	_, err = c.DeleteNetworkInterface(ctx, eni)
	if e := gateway.WireError(err); e.Code != api.CodeNetworkInterfaceInUse {
		t.Errorf("deleting an attached interface answers %+v", e)
	}
	fx.waitState(inst.ID, api.StateRunning)
	extra, err := c.CreateNetworkInterface(ctx, api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AttachNetworkInterface(ctx, extra.ID, api.AttachNetworkInterfaceRequest{Instance: inst.ID})
	if e := gateway.WireError(err); e.Code != api.CodeIncorrectInstanceState {
		t.Errorf("attaching to a running instance answers %+v", e)
	}
	if _, err := c.TerminateInstance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	// Everything can now go, in order, and leaves the VPC deletable.
	for _, step := range []func() error{
		func() error { _, err := c.DeleteNetworkInterface(ctx, extra.ID); return err },
		func() error { _, err := c.DeleteSubnet(ctx, sn.ID); return err },
		func() error { _, err := c.DeleteSecurityGroup(ctx, g.ID); return err },
		func() error { _, err := c.DeleteVPC(ctx, v.ID); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if l, _ := c.ListVPCs(ctx); len(l) != 0 {
		t.Errorf("VPCs left: %+v", l)
	}
	if len(told) == 0 || told[len(told)-1] != v.ID {
		t.Errorf("changes told %q", told)
	}
}
