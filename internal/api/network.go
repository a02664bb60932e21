package api

import "time"

// Prefixes of the ids of the network nouns, as EC2 spells them.
const (
	VPCIDPrefix              = "vpc-"
	SubnetIDPrefix           = "subnet-"
	SecurityGroupIDPrefix    = "sg-"
	NetworkInterfaceIDPrefix = "eni-"
)

// Security group rule protocols.
const (
	ProtocolTCP  = "tcp"
	ProtocolUDP  = "udp"
	ProtocolICMP = "icmp"
	ProtocolAll  = "all"
)

// AnyPort is the FromPort/ToPort of a rule that matches every ICMP type
// or code, and of every rule of protocol "all".
const AnyPort = -1

// DefaultSecurityGroupName is the name of the group every VPC is made
// with; no other group may take it.
const DefaultSecurityGroupName = "default"

// Network interface statuses.
const (
	InterfaceAvailable = "available"
	InterfaceInUse     = "in-use"

	// InterfaceTypeHostGateway is the type of the interface that gives a
	// host an address in a VPC (its host gateway).
	InterfaceTypeHostGateway = "host_gateway"
)

// CreateVPCRequest is the body of POST /v1/vpcs.
type CreateVPCRequest struct {
	Name string `json:"name,omitempty"`
	// CIDR is the VPC's IPv4 block, /16 to /28, e.g. 10.0.0.0/16.
	CIDR string `json:"cidr"`
	// HostGateway gives the host an address in the VPC (a tap interface
	// made by azoted), so that the operator can reach its instances.
	HostGateway bool              `json:"host_gateway,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// ModifyVPCRequest is the body of PATCH /v1/vpcs/{ref}.
type ModifyVPCRequest struct {
	HostGateway *bool `json:"host_gateway,omitempty"`
}

// VPC is the public view of a virtual private cloud. Its traffic key is
// never part of it.
type VPC struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	CIDR string `json:"cidr"`
	// NumericID names the VPC in the encapsulation header (never 0).
	NumericID   uint32 `json:"numeric_id"`
	HostGateway bool   `json:"host_gateway"`
	// DefaultSecurityGroup is the id of the group made with the VPC.
	DefaultSecurityGroup string `json:"default_security_group"`
	// KeyEpoch is the epoch of the traffic key the VPC's cards seal
	// with: 1 at creation, one more at each rotation once every card has
	// the new key.
	KeyEpoch uint32 `json:"key_epoch"`
	// NextKeyEpoch, during a rotation, is the epoch being rotated to:
	// every card opens it, and seals with it once all have it.
	NextKeyEpoch uint32 `json:"next_key_epoch,omitempty"`
	// KeyRotatedAt is when the last rotation was asked for.
	KeyRotatedAt *time.Time        `json:"key_rotated_at,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
}

// CreateSubnetRequest is the body of POST /v1/subnets.
type CreateSubnetRequest struct {
	Name string `json:"name,omitempty"`
	VPC  string `json:"vpc"` // id or name
	// CIDR is inside the VPC's, /16 to /28, overlapping none of the
	// VPC's other subnets.
	CIDR string            `json:"cidr"`
	Tags map[string]string `json:"tags,omitempty"`
}

// Subnet is the public view of a subnet.
type Subnet struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	VPCID string `json:"vpc_id"`
	CIDR  string `json:"cidr"`
	// Gateway is the subnet's router: its first address after the
	// network's own (EC2's "+1"). The first four addresses and the last
	// are never given to interfaces.
	Gateway string `json:"gateway"`
	// AvailableAddresses is how many addresses interfaces may still take.
	AvailableAddresses int               `json:"available_addresses"`
	Tags               map[string]string `json:"tags,omitempty"`
	CreatedAt          time.Time         `json:"created_at"`
}

// CreateSecurityGroupRequest is the body of POST /v1/security-groups.
type CreateSecurityGroupRequest struct {
	VPC         string            `json:"vpc"` // id or name
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// SecurityGroupRule is one allow rule of a security group (EC2's
// IpPermission with one range or one group). Ingress rules name the
// source of the traffic they allow; egress rules its destination.
type SecurityGroupRule struct {
	// Protocol is tcp, udp, icmp or all.
	Protocol string `json:"protocol"`
	// FromPort and ToPort are the port range of tcp and udp (0-65535);
	// for icmp, the ICMP type and code (AnyPort for any); AnyPort both
	// for all.
	FromPort int `json:"from_port"`
	ToPort   int `json:"to_port"`
	// CIDR is an IPv4 block; Group a security group id of the same VPC
	// (its members' addresses). Exactly one is set.
	CIDR  string `json:"cidr,omitempty"`
	Group string `json:"group,omitempty"`
}

// SecurityGroupRulesRequest is the body of the authorize-ingress,
// authorize-egress, revoke-ingress and revoke-egress routes.
type SecurityGroupRulesRequest struct {
	Rules []SecurityGroupRule `json:"rules"`
}

// SecurityGroup is the public view of a security group.
type SecurityGroup struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	VPCID       string `json:"vpc_id"`
	// Default marks the group made with the VPC; it goes with it.
	Default   bool                `json:"default,omitempty"`
	Ingress   []SecurityGroupRule `json:"ingress"`
	Egress    []SecurityGroupRule `json:"egress"`
	Tags      map[string]string   `json:"tags,omitempty"`
	CreatedAt time.Time           `json:"created_at"`
}

// CreateNetworkInterfaceRequest is the body of POST /v1/network-interfaces.
type CreateNetworkInterfaceRequest struct {
	Name   string `json:"name,omitempty"`
	Subnet string `json:"subnet"` // id or name
	// SecurityGroups are ids (or names) of groups of the subnet's VPC;
	// none means the VPC's default group.
	SecurityGroups []string `json:"security_groups,omitempty"`
	// PrivateIP asks for this address, which must be inside the subnet,
	// not reserved and free; empty takes the lowest free one.
	PrivateIP string            `json:"private_ip,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
}

// AttachNetworkInterfaceRequest is the body of POST
// /v1/network-interfaces/{ref}/attach.
type AttachNetworkInterfaceRequest struct {
	Instance string `json:"instance"`
	// DeviceIndex is the interface's slot on the instance; nil takes the
	// lowest free one. Index 0 is the primary interface.
	DeviceIndex *int `json:"device_index,omitempty"`
}

// NetworkInterfaceAttachment says which instance has an interface.
type NetworkInterfaceAttachment struct {
	InstanceID  string `json:"instance_id"`
	DeviceIndex int    `json:"device_index"`
	// DeleteOnTermination: the interface goes with its instance (the
	// primary interface made at run); otherwise it is detached.
	DeleteOnTermination bool `json:"delete_on_termination"`
}

// NetworkInterface is the public view of a network interface.
type NetworkInterface struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	VPCID    string `json:"vpc_id"`
	SubnetID string `json:"subnet_id"`
	// NumericID names the interface in the encapsulation header; unique
	// within its VPC, never 0.
	NumericID      uint32                      `json:"numeric_id"`
	PrivateIP      string                      `json:"private_ip"`
	MAC            string                      `json:"mac"`
	SecurityGroups []string                    `json:"security_groups"`
	Status         string                      `json:"status"`
	Attachment     *NetworkInterfaceAttachment `json:"attachment,omitempty"`
	// Type is "" for an instance's interface, InterfaceTypeHostGateway
	// for the one azoted makes to give a host an address in the VPC.
	Type string `json:"interface_type,omitempty"`
	// Host is the host whose net card serves the interface.
	Host      string            `json:"host"`
	Tags      map[string]string `json:"tags,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}

// InstanceNetworkInterface is one interface of an instance, as the
// instance shows it.
type InstanceNetworkInterface struct {
	ID          string `json:"id"`
	DeviceIndex int    `json:"device_index"`
	VPCID       string `json:"vpc_id"`
	SubnetID    string `json:"subnet_id"`
	PrivateIP   string `json:"private_ip"`
	MAC         string `json:"mac"`
}
