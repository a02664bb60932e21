package gateway

import (
	"context"
	"encoding/json"

	"github.com/azote/azote/internal/api"
)

// NetworkBackend is the part of Backend that serves the network nouns:
// VPCs, subnets, security groups and network interfaces. As everywhere,
// every id it is handed is the one the call was authorised on.
type NetworkBackend interface {
	CreateVPC(ctx context.Context, r api.CreateVPCRequest) (api.VPC, error)
	ListVPCs(ctx context.Context) ([]api.VPC, error)
	DescribeVPC(ctx context.Context, id string) (api.VPC, error)
	ModifyVPC(ctx context.Context, id string, r api.ModifyVPCRequest) (api.VPC, error)
	DeleteVPC(ctx context.Context, id string) (api.VPC, error)
	RotateVPCKey(ctx context.Context, id string) (api.VPC, error)

	CreateSubnet(ctx context.Context, r api.CreateSubnetRequest) (api.Subnet, error)
	// ListSubnets lists the subnets of the VPC vpc (every VPC's when
	// empty); so do the other lists.
	ListSubnets(ctx context.Context, vpc string) ([]api.Subnet, error)
	DescribeSubnet(ctx context.Context, id string) (api.Subnet, error)
	DeleteSubnet(ctx context.Context, id string) (api.Subnet, error)

	CreateSecurityGroup(ctx context.Context, r api.CreateSecurityGroupRequest) (api.SecurityGroup, error)
	ListSecurityGroups(ctx context.Context, vpc string) ([]api.SecurityGroup, error)
	DescribeSecurityGroup(ctx context.Context, id string) (api.SecurityGroup, error)
	DeleteSecurityGroup(ctx context.Context, id string) (api.SecurityGroup, error)
	// SecurityGroupRules authorises (add) or revokes rules of one
	// direction (ingress or egress).
	SecurityGroupRules(ctx context.Context, id, direction string, add bool, r api.SecurityGroupRulesRequest) (api.SecurityGroup, error)

	CreateNetworkInterface(ctx context.Context, r api.CreateNetworkInterfaceRequest) (api.NetworkInterface, error)
	ListNetworkInterfaces(ctx context.Context, vpc string) ([]api.NetworkInterface, error)
	DescribeNetworkInterface(ctx context.Context, id string) (api.NetworkInterface, error)
	DeleteNetworkInterface(ctx context.Context, id string) (api.NetworkInterface, error)
	AttachNetworkInterface(ctx context.Context, id string, r api.AttachNetworkInterfaceRequest) (api.NetworkInterface, error)
	DetachNetworkInterface(ctx context.Context, id string) (api.NetworkInterface, error)
}

// Kinds of the network objects a route's {ref} or body names; their
// ARNs are compute's vpc/ID, subnet/ID, security-group/ID and
// network-interface/ID, as EC2's.
const (
	kindVPC       = "vpc"
	kindSubnet    = "subnet"
	kindGroup     = "security-group"
	kindInterface = "network-interface"
)

// onTarget runs an action on the id its call was authorised on.
func onTarget[T any](fn func(ctx context.Context, id string, c *restCall) (T, error)) func(context.Context, *api.Caller, any) (any, error) {
	return func(ctx context.Context, _ *api.Caller, req any) (any, error) {
		c := rc(req)
		id, err := c.target()
		if err != nil {
			return nil, err
		}
		if c.alsoErr != nil {
			return nil, c.alsoErr
		}
		return fn(ctx, id, c)
	}
}

// unlessAlsoErr runs a create whose further objects all exist.
func unlessAlsoErr[T any](fn func(ctx context.Context, c *restCall) (T, error)) func(context.Context, *api.Caller, any) (any, error) {
	return func(ctx context.Context, _ *api.Caller, req any) (any, error) {
		c := rc(req)
		if c.alsoErr != nil {
			return nil, c.alsoErr
		}
		return fn(ctx, c)
	}
}

// alsoRef authorises a call on the object of kind that *ref names too,
// and replaces *ref with its id; a ref that names nothing makes the call
// answer that object's NotFound once it is authorised.
func (h *handler) alsoRef(ctx context.Context, c *restCall, kind string, ref *string) string {
	arn, id, _ := h.also(ctx, c.r, kind, *ref)
	if id == "" {
		if c.alsoErr == nil {
			c.alsoErr = notFound(kind, *ref)
		}
		return arn
	}
	*ref = id
	return arn
}

// networkKeys are the request keys of a network create: its tags.
func networkKeys(body []byte) (map[string][]string, *api.Error) {
	var req struct {
		Tags map[string]string `json:"tags"`
	}
	if len(body) > 0 && json.Unmarshal(body, &req) != nil {
		return nil, nil
	}
	m := map[string][]string{}
	return m, requestTagKeys(req.Tags, m)
}

// networkRoutes are the routes of the network nouns.
func (h *handler) networkRoutes() []*route {
	b := h.b
	star := func(context.Context, any) (string, error) { return "*", nil }
	of := func(resource string) func(context.Context, any) (string, error) {
		return func(context.Context, any) (string, error) { return h.arn("compute", resource), nil }
	}
	vpc, subnet, group, iface := h.resolve(kindVPC), h.resolve(kindSubnet), h.resolve(kindGroup), h.resolve(kindInterface)
	rest := func(pattern string, bd body, op *api.Operation) *route {
		return &route{pattern: pattern, op: op, rest: true, body: bd}
	}
	restJSON := func(pattern string, newBody func() any, op *api.Operation) *route {
		return &route{pattern: pattern, op: op, rest: true, body: bodyJSON, newBody: newBody}
	}
	vpcFilter := func(c *restCall) string { return c.r.URL.Query().Get("vpc") }
	rules := func(name, direction string, add bool) *route {
		return restJSON("POST /v1/security-groups/{ref}/"+map[bool]string{true: "authorize-", false: "revoke-"}[add]+direction,
			newOf[api.SecurityGroupRulesRequest], &api.Operation{Name: name, Resource: group,
				Do: onTarget(func(ctx context.Context, id string, c *restCall) (api.SecurityGroup, error) {
					return b.SecurityGroupRules(ctx, id, direction, add, *c.body.(*api.SecurityGroupRulesRequest))
				})})
	}
	return []*route{
		restJSON("POST /v1/vpcs", newOf[api.CreateVPCRequest], &api.Operation{Name: "compute:CreateVpc",
			Resource: of("vpc/*"), Conditions: h.bodyKeys(networkKeys),
			Do: unlessAlsoErr(func(ctx context.Context, c *restCall) (api.VPC, error) {
				return b.CreateVPC(ctx, *c.body.(*api.CreateVPCRequest))
			})}),
		rest("GET /v1/vpcs", bodyIgnored, &api.Operation{Name: "compute:DescribeVpcs", ReadOnly: true, Resource: star,
			Do: func(ctx context.Context, _ *api.Caller, _ any) (any, error) { return b.ListVPCs(ctx) }}),
		rest("GET /v1/vpcs/{ref}", bodyIgnored, &api.Operation{Name: "compute:DescribeVpcs", ReadOnly: true, Resource: vpc,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.VPC, error) { return b.DescribeVPC(ctx, id) })}),
		restJSON("PATCH /v1/vpcs/{ref}", newOf[api.ModifyVPCRequest], &api.Operation{Name: "compute:ModifyVpcAttribute", Resource: vpc,
			Do: onTarget(func(ctx context.Context, id string, c *restCall) (api.VPC, error) {
				return b.ModifyVPC(ctx, id, *c.body.(*api.ModifyVPCRequest))
			})}),
		rest("DELETE /v1/vpcs/{ref}", bodyIgnored, &api.Operation{Name: "compute:DeleteVpc", Resource: vpc,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.VPC, error) { return b.DeleteVPC(ctx, id) })}),
		rest("POST /v1/vpcs/{ref}/rotate-key", bodyEmpty, &api.Operation{Name: "compute:RotateVpcKey", Resource: vpc,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.VPC, error) { return b.RotateVPCKey(ctx, id) })}),

		restJSON("POST /v1/subnets", newOf[api.CreateSubnetRequest], &api.Operation{Name: "compute:CreateSubnet",
			Resource: of("subnet/*"), Conditions: h.bodyKeys(networkKeys),
			// A subnet is made in a VPC: the caller must be allowed to
			// make it there, as EC2 evaluates CreateSubnet on the VPC.
			Also: func(ctx context.Context, req any) ([]string, error) {
				c := rc(req)
				return []string{h.alsoRef(ctx, c, kindVPC, &c.body.(*api.CreateSubnetRequest).VPC)}, nil
			},
			Do: unlessAlsoErr(func(ctx context.Context, c *restCall) (api.Subnet, error) {
				return b.CreateSubnet(ctx, *c.body.(*api.CreateSubnetRequest))
			})}),
		rest("GET /v1/subnets", bodyIgnored, &api.Operation{Name: "compute:DescribeSubnets", ReadOnly: true, Resource: star,
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				return b.ListSubnets(ctx, vpcFilter(rc(req)))
			}}),
		rest("GET /v1/subnets/{ref}", bodyIgnored, &api.Operation{Name: "compute:DescribeSubnets", ReadOnly: true, Resource: subnet,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.Subnet, error) {
				return b.DescribeSubnet(ctx, id)
			})}),
		rest("DELETE /v1/subnets/{ref}", bodyIgnored, &api.Operation{Name: "compute:DeleteSubnet", Resource: subnet,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.Subnet, error) { return b.DeleteSubnet(ctx, id) })}),

		restJSON("POST /v1/security-groups", newOf[api.CreateSecurityGroupRequest], &api.Operation{Name: "compute:CreateSecurityGroup",
			Resource: of("security-group/*"), Conditions: h.bodyKeys(networkKeys),
			Also: func(ctx context.Context, req any) ([]string, error) {
				c := rc(req)
				return []string{h.alsoRef(ctx, c, kindVPC, &c.body.(*api.CreateSecurityGroupRequest).VPC)}, nil
			},
			Do: unlessAlsoErr(func(ctx context.Context, c *restCall) (api.SecurityGroup, error) {
				return b.CreateSecurityGroup(ctx, *c.body.(*api.CreateSecurityGroupRequest))
			})}),
		rest("GET /v1/security-groups", bodyIgnored, &api.Operation{Name: "compute:DescribeSecurityGroups", ReadOnly: true, Resource: star,
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				return b.ListSecurityGroups(ctx, vpcFilter(rc(req)))
			}}),
		rest("GET /v1/security-groups/{ref}", bodyIgnored, &api.Operation{Name: "compute:DescribeSecurityGroups", ReadOnly: true, Resource: group,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.SecurityGroup, error) {
				return b.DescribeSecurityGroup(ctx, id)
			})}),
		rest("DELETE /v1/security-groups/{ref}", bodyIgnored, &api.Operation{Name: "compute:DeleteSecurityGroup", Resource: group,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.SecurityGroup, error) {
				return b.DeleteSecurityGroup(ctx, id)
			})}),
		rules("compute:AuthorizeSecurityGroupIngress", "ingress", true),
		rules("compute:AuthorizeSecurityGroupEgress", "egress", true),
		rules("compute:RevokeSecurityGroupIngress", "ingress", false),
		rules("compute:RevokeSecurityGroupEgress", "egress", false),

		restJSON("POST /v1/network-interfaces", newOf[api.CreateNetworkInterfaceRequest], &api.Operation{Name: "compute:CreateNetworkInterface",
			Resource: of("network-interface/*"), Conditions: h.bodyKeys(networkKeys),
			// Made in a subnet, with groups: each is evaluated, as EC2
			// evaluates CreateNetworkInterface on both.
			Also: func(ctx context.Context, req any) ([]string, error) {
				c := rc(req)
				q := c.body.(*api.CreateNetworkInterfaceRequest)
				arns := []string{h.alsoRef(ctx, c, kindSubnet, &q.Subnet)}
				for i := range q.SecurityGroups {
					arns = append(arns, h.alsoRef(ctx, c, kindGroup, &q.SecurityGroups[i]))
				}
				return arns, nil
			},
			Do: unlessAlsoErr(func(ctx context.Context, c *restCall) (api.NetworkInterface, error) {
				return b.CreateNetworkInterface(ctx, *c.body.(*api.CreateNetworkInterfaceRequest))
			})}),
		rest("GET /v1/network-interfaces", bodyIgnored, &api.Operation{Name: "compute:DescribeNetworkInterfaces", ReadOnly: true, Resource: star,
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				return b.ListNetworkInterfaces(ctx, vpcFilter(rc(req)))
			}}),
		rest("GET /v1/network-interfaces/{ref}", bodyIgnored, &api.Operation{Name: "compute:DescribeNetworkInterfaces", ReadOnly: true, Resource: iface,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.NetworkInterface, error) {
				return b.DescribeNetworkInterface(ctx, id)
			})}),
		rest("DELETE /v1/network-interfaces/{ref}", bodyIgnored, &api.Operation{Name: "compute:DeleteNetworkInterface", Resource: iface,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.NetworkInterface, error) {
				return b.DeleteNetworkInterface(ctx, id)
			})}),
		restJSON("POST /v1/network-interfaces/{ref}/attach", newOf[api.AttachNetworkInterfaceRequest], &api.Operation{Name: "compute:AttachNetworkInterface",
			Resource: iface,
			Also: func(ctx context.Context, req any) ([]string, error) {
				c := rc(req)
				return []string{h.alsoRef(ctx, c, kindInstance, &c.body.(*api.AttachNetworkInterfaceRequest).Instance)}, nil
			},
			Do: onTarget(func(ctx context.Context, id string, c *restCall) (api.NetworkInterface, error) {
				return b.AttachNetworkInterface(ctx, id, *c.body.(*api.AttachNetworkInterfaceRequest))
			})}),
		rest("POST /v1/network-interfaces/{ref}/detach", bodyEmpty, &api.Operation{Name: "compute:DetachNetworkInterface", Resource: iface,
			// Detaching acts on the instance too.
			Also: func(ctx context.Context, req any) ([]string, error) {
				c := rc(req)
				if !c.found {
					return nil, nil
				}
				cur, err := b.DescribeNetworkInterface(ctx, c.id)
				if err != nil || cur.Attachment == nil {
					return nil, nil
				}
				arn, _, _ := h.also(ctx, c.r, kindInstance, cur.Attachment.InstanceID)
				return []string{arn}, nil
			},
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.NetworkInterface, error) {
				return b.DetachNetworkInterface(ctx, id)
			})}),
	}
}

// runNetworkAlso authorises a launch on the subnet and the groups of its
// primary interface (compute:RunInstances on each, as EC2 evaluates
// RunInstances on them), replacing their refs with their ids.
func (h *handler) runNetworkAlso(ctx context.Context, c *restCall, q *api.RunInstanceRequest) []string {
	var arns []string
	if q.Subnet != "" {
		arns = append(arns, h.alsoRef(ctx, c, kindSubnet, &q.Subnet))
	}
	for i := range q.SecurityGroups {
		arns = append(arns, h.alsoRef(ctx, c, kindGroup, &q.SecurityGroups[i]))
	}
	return arns
}

// runAlsoAction is the action a launch's further resources are
// authorised for: attaching for a volume, the launch itself for the
// network objects of its primary interface and for its key pair.
func (h *handler) runAlsoAction(arn string) string {
	a, err := api.ParseARN(arn)
	if err != nil {
		return ""
	}
	if kind, _, _ := a.Kind(); kind == kindSubnet || kind == kindGroup || kind == kindKeyPair {
		return "compute:RunInstances"
	}
	if kind, _, _ := a.Kind(); a.Service == "iam" && kind == "role" {
		return "iam:PassRole" // runProfileAlso
	}
	return ""
}

// summarizeNetwork keeps the identifying fields of a network result for
// its audit record.
func summarizeNetwork(out any) map[string]any {
	switch v := out.(type) {
	case api.VPC:
		return map[string]any{"id": v.ID, "name": v.Name, "cidr": v.CIDR, "host_gateway": v.HostGateway, "key_epoch": v.KeyEpoch,
			"next_key_epoch": v.NextKeyEpoch}
	case api.Subnet:
		return map[string]any{"id": v.ID, "name": v.Name, "vpc_id": v.VPCID, "cidr": v.CIDR}
	case api.SecurityGroup:
		return map[string]any{"id": v.ID, "name": v.Name, "vpc_id": v.VPCID, "ingress_rules": len(v.Ingress), "egress_rules": len(v.Egress)}
	case api.NetworkInterface:
		m := map[string]any{"id": v.ID, "vpc_id": v.VPCID, "subnet_id": v.SubnetID, "private_ip": v.PrivateIP, "mac": v.MAC, "status": v.Status}
		if v.Attachment != nil {
			m["instance_id"], m["device_index"] = v.Attachment.InstanceID, v.Attachment.DeviceIndex
		}
		return m
	}
	return map[string]any{}
}
