package controller

import (
	"context"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/vpcs"
)

// The network part of the façade (gateway.NetworkBackend): the records
// are the network owner's (vpcs); attaching and detaching an interface
// are the instance owner's, which checks the instance's state and keeps
// its record in the same transaction.

// CreateVPC implements gateway.NetworkBackend.
func (c *Controller) CreateVPC(_ context.Context, r api.CreateVPCRequest) (api.VPC, error) {
	return c.vpcs.CreateVPC(r)
}

// ListVPCs implements gateway.NetworkBackend.
func (c *Controller) ListVPCs(context.Context) ([]api.VPC, error) { return c.vpcs.ListVPCs() }

// DescribeVPC implements gateway.NetworkBackend.
func (c *Controller) DescribeVPC(_ context.Context, id string) (api.VPC, error) {
	v, err := c.vpcs.ResolveVPC(id)
	return v.VPC, err
}

// ModifyVPC implements gateway.NetworkBackend.
func (c *Controller) ModifyVPC(_ context.Context, id string, r api.ModifyVPCRequest) (api.VPC, error) {
	return c.vpcs.ModifyVPC(id, r)
}

// DeleteVPC implements gateway.NetworkBackend.
func (c *Controller) DeleteVPC(_ context.Context, id string) (api.VPC, error) {
	return c.vpcs.DeleteVPC(id)
}

// RotateVPCKey implements gateway.NetworkBackend.
func (c *Controller) RotateVPCKey(_ context.Context, id string) (api.VPC, error) {
	return c.vpcs.RotateKey(id)
}

// CreateSubnet implements gateway.NetworkBackend.
func (c *Controller) CreateSubnet(_ context.Context, r api.CreateSubnetRequest) (api.Subnet, error) {
	return c.vpcs.CreateSubnet(r)
}

// ListSubnets implements gateway.NetworkBackend.
func (c *Controller) ListSubnets(_ context.Context, vpc string) ([]api.Subnet, error) {
	return c.vpcs.ListSubnets(vpc)
}

// DescribeSubnet implements gateway.NetworkBackend.
func (c *Controller) DescribeSubnet(_ context.Context, id string) (api.Subnet, error) {
	return c.vpcs.DescribeSubnet(id)
}

// DeleteSubnet implements gateway.NetworkBackend.
func (c *Controller) DeleteSubnet(_ context.Context, id string) (api.Subnet, error) {
	return c.vpcs.DeleteSubnet(id)
}

// CreateSecurityGroup implements gateway.NetworkBackend.
func (c *Controller) CreateSecurityGroup(_ context.Context, r api.CreateSecurityGroupRequest) (api.SecurityGroup, error) {
	return c.vpcs.CreateSecurityGroup(r)
}

// ListSecurityGroups implements gateway.NetworkBackend.
func (c *Controller) ListSecurityGroups(_ context.Context, vpc string) ([]api.SecurityGroup, error) {
	return c.vpcs.ListSecurityGroups(vpc)
}

// DescribeSecurityGroup implements gateway.NetworkBackend.
func (c *Controller) DescribeSecurityGroup(_ context.Context, id string) (api.SecurityGroup, error) {
	g, err := c.vpcs.ResolveGroup(id)
	return g.SecurityGroup, err
}

// DeleteSecurityGroup implements gateway.NetworkBackend.
func (c *Controller) DeleteSecurityGroup(_ context.Context, id string) (api.SecurityGroup, error) {
	return c.vpcs.DeleteSecurityGroup(id)
}

// SecurityGroupRules implements gateway.NetworkBackend.
func (c *Controller) SecurityGroupRules(_ context.Context, id, direction string, add bool, r api.SecurityGroupRulesRequest) (api.SecurityGroup, error) {
	switch {
	case direction == string(vpcs.Ingress) && add:
		return c.vpcs.AuthorizeIngress(id, r.Rules)
	case direction == string(vpcs.Ingress):
		return c.vpcs.RevokeIngress(id, r.Rules)
	case add:
		return c.vpcs.AuthorizeEgress(id, r.Rules)
	}
	return c.vpcs.RevokeEgress(id, r.Rules)
}

// CreateNetworkInterface implements gateway.NetworkBackend.
func (c *Controller) CreateNetworkInterface(_ context.Context, r api.CreateNetworkInterfaceRequest) (api.NetworkInterface, error) {
	return c.vpcs.CreateInterface(r)
}

// ListNetworkInterfaces implements gateway.NetworkBackend.
func (c *Controller) ListNetworkInterfaces(_ context.Context, vpc string) ([]api.NetworkInterface, error) {
	return c.vpcs.ListInterfaces(vpc)
}

// DescribeNetworkInterface implements gateway.NetworkBackend.
func (c *Controller) DescribeNetworkInterface(_ context.Context, id string) (api.NetworkInterface, error) {
	return c.vpcs.DescribeInterface(id)
}

// DeleteNetworkInterface implements gateway.NetworkBackend.
func (c *Controller) DeleteNetworkInterface(_ context.Context, id string) (api.NetworkInterface, error) {
	return c.vpcs.DeleteInterface(id)
}

// AttachNetworkInterface implements gateway.NetworkBackend.
func (c *Controller) AttachNetworkInterface(ctx context.Context, id string, r api.AttachNetworkInterfaceRequest) (api.NetworkInterface, error) {
	return c.instances.AttachInterface(ctx, id, r)
}

// DetachNetworkInterface implements gateway.NetworkBackend.
func (c *Controller) DetachNetworkInterface(ctx context.Context, id string) (api.NetworkInterface, error) {
	return c.instances.DetachInterface(ctx, id)
}

// resolveNetworkID is ResolveID for the network kinds.
func (c *Controller) resolveNetworkID(kind, ref string) (string, map[string]string, bool) {
	switch kind {
	case "vpc":
		if v, err := c.vpcs.ResolveVPC(ref); err == nil {
			return v.ID, v.Tags, true
		}
	case "subnet":
		if v, err := c.vpcs.ResolveSubnet(ref); err == nil {
			return v.ID, v.Tags, true
		}
	case "security-group":
		if v, err := c.vpcs.ResolveGroup(ref); err == nil {
			return v.ID, v.Tags, true
		}
	case "network-interface":
		if v, err := c.vpcs.ResolveInterface(ref); err == nil {
			return v.ID, v.Tags, true
		}
	}
	return ref, nil, false
}
