package client

import (
	"context"
	"io"
	"net/url"

	"github.com/azote/azote/internal/api"
)

// The network nouns: VPCs, subnets, security groups and network
// interfaces. A ref is an id or a name; a list's vpc (an id or a name)
// limits it to one VPC, "" lists every VPC's.

func listPath(path, vpc string) string {
	if vpc == "" {
		return path
	}
	return path + "?vpc=" + url.QueryEscape(vpc)
}

// optionalBody is body as JSON, or no body at all for nil.
func optionalBody(body any) io.Reader {
	if body == nil {
		return nil
	}
	return jsonBody(body)
}

func (c *Client) CreateVPC(ctx context.Context, r api.CreateVPCRequest) (api.VPC, error) {
	var v api.VPC
	return v, c.do(ctx, "POST", "/v1/vpcs", jsonBody(r), &v)
}

func (c *Client) ListVPCs(ctx context.Context) ([]api.VPC, error) {
	var l []api.VPC
	return l, c.do(ctx, "GET", "/v1/vpcs", nil, &l)
}

func (c *Client) DescribeVPC(ctx context.Context, ref string) (api.VPC, error) {
	var v api.VPC
	return v, c.do(ctx, "GET", "/v1/vpcs/"+url.PathEscape(ref), nil, &v)
}

func (c *Client) ModifyVPC(ctx context.Context, ref string, r api.ModifyVPCRequest) (api.VPC, error) {
	var v api.VPC
	return v, c.do(ctx, "PATCH", "/v1/vpcs/"+url.PathEscape(ref), jsonBody(r), &v)
}

func (c *Client) DeleteVPC(ctx context.Context, ref string) (api.VPC, error) {
	var v api.VPC
	return v, c.do(ctx, "DELETE", "/v1/vpcs/"+url.PathEscape(ref), nil, &v)
}

// RotateVPCKey gives the VPC a new traffic key.
func (c *Client) RotateVPCKey(ctx context.Context, ref string) (api.VPC, error) {
	var v api.VPC
	return v, c.do(ctx, "POST", "/v1/vpcs/"+url.PathEscape(ref)+"/rotate-key", nil, &v)
}

func (c *Client) CreateSubnet(ctx context.Context, r api.CreateSubnetRequest) (api.Subnet, error) {
	var v api.Subnet
	return v, c.do(ctx, "POST", "/v1/subnets", jsonBody(r), &v)
}

func (c *Client) ListSubnets(ctx context.Context, vpc string) ([]api.Subnet, error) {
	var l []api.Subnet
	return l, c.do(ctx, "GET", listPath("/v1/subnets", vpc), nil, &l)
}

func (c *Client) DescribeSubnet(ctx context.Context, ref string) (api.Subnet, error) {
	var v api.Subnet
	return v, c.do(ctx, "GET", "/v1/subnets/"+url.PathEscape(ref), nil, &v)
}

func (c *Client) DeleteSubnet(ctx context.Context, ref string) (api.Subnet, error) {
	var v api.Subnet
	return v, c.do(ctx, "DELETE", "/v1/subnets/"+url.PathEscape(ref), nil, &v)
}

func (c *Client) CreateSecurityGroup(ctx context.Context, r api.CreateSecurityGroupRequest) (api.SecurityGroup, error) {
	var v api.SecurityGroup
	return v, c.do(ctx, "POST", "/v1/security-groups", jsonBody(r), &v)
}

func (c *Client) ListSecurityGroups(ctx context.Context, vpc string) ([]api.SecurityGroup, error) {
	var l []api.SecurityGroup
	return l, c.do(ctx, "GET", listPath("/v1/security-groups", vpc), nil, &l)
}

func (c *Client) DescribeSecurityGroup(ctx context.Context, ref string) (api.SecurityGroup, error) {
	var v api.SecurityGroup
	return v, c.do(ctx, "GET", "/v1/security-groups/"+url.PathEscape(ref), nil, &v)
}

func (c *Client) DeleteSecurityGroup(ctx context.Context, ref string) (api.SecurityGroup, error) {
	var v api.SecurityGroup
	return v, c.do(ctx, "DELETE", "/v1/security-groups/"+url.PathEscape(ref), nil, &v)
}

// SecurityGroupRules authorises or revokes rules: action is
// authorize-ingress, authorize-egress, revoke-ingress or revoke-egress.
func (c *Client) SecurityGroupRules(ctx context.Context, ref, action string, rules []api.SecurityGroupRule) (api.SecurityGroup, error) {
	var v api.SecurityGroup
	return v, c.do(ctx, "POST", "/v1/security-groups/"+url.PathEscape(ref)+"/"+action, jsonBody(api.SecurityGroupRulesRequest{Rules: rules}), &v)
}

func (c *Client) CreateNetworkInterface(ctx context.Context, r api.CreateNetworkInterfaceRequest) (api.NetworkInterface, error) {
	var v api.NetworkInterface
	return v, c.do(ctx, "POST", "/v1/network-interfaces", jsonBody(r), &v)
}

func (c *Client) ListNetworkInterfaces(ctx context.Context, vpc string) ([]api.NetworkInterface, error) {
	var l []api.NetworkInterface
	return l, c.do(ctx, "GET", listPath("/v1/network-interfaces", vpc), nil, &l)
}

func (c *Client) DescribeNetworkInterface(ctx context.Context, ref string) (api.NetworkInterface, error) {
	var v api.NetworkInterface
	return v, c.do(ctx, "GET", "/v1/network-interfaces/"+url.PathEscape(ref), nil, &v)
}

func (c *Client) DeleteNetworkInterface(ctx context.Context, ref string) (api.NetworkInterface, error) {
	var v api.NetworkInterface
	return v, c.do(ctx, "DELETE", "/v1/network-interfaces/"+url.PathEscape(ref), nil, &v)
}

// NetworkInterfaceAction is attach (body AttachNetworkInterfaceRequest)
// or detach (no body).
func (c *Client) NetworkInterfaceAction(ctx context.Context, ref, action string, body any) (api.NetworkInterface, error) {
	var v api.NetworkInterface
	return v, c.do(ctx, "POST", "/v1/network-interfaces/"+url.PathEscape(ref)+"/"+action, optionalBody(body), &v)
}
