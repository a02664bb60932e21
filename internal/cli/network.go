package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/azote/azote/internal/api"
)

var vpcCommands = []command{
	{use: "create", short: "create a VPC (--cidr 10.0.0.0/16, /16 to /28) with its default security group", build: vpcCreate,
		example: "azote vpc create --name prod --cidr 10.0.0.0/16 --host-gateway"},
	{use: "list", short: "list VPCs", build: vpcList, example: "azote vpc list -o json"},
	{use: "describe VPC", short: "show one VPC (by id or name)", build: vpcDescribe, example: "azote vpc describe prod"},
	{use: "delete VPC", short: "delete a VPC that has no subnets, interfaces or groups but its default one", build: vpcDelete,
		example: "azote vpc delete prod"},
	{use: "modify VPC", short: "change a VPC's attributes (--host-gateway)", build: vpcModify,
		example: "azote vpc modify prod --host-gateway=true"},
	{use: "rotate-key VPC", short: "give a VPC a new traffic key: cards take it, then seal with it once all have it (the old one stays accepted until the next rotation)", build: vpcRotateKey,
		example: "azote vpc rotate-key prod"},
}

var subnetCommands = []command{
	{use: "create", short: "create a subnet in a VPC (--vpc --cidr, inside the VPC's block)", build: subnetCreate,
		example: "azote subnet create --vpc prod --name front --cidr 10.0.1.0/24"},
	{use: "list", short: "list subnets (of one VPC with --vpc)", build: subnetList, example: "azote subnet list --vpc prod"},
	{use: "describe SUBNET", short: "show one subnet (by id or name)", build: subnetDescribe, example: "azote subnet describe front"},
	{use: "delete SUBNET", short: "delete a subnet no interface is in", build: subnetDelete, example: "azote subnet delete front"},
}

var securityGroupCommands = []command{
	{use: "create", short: "create a security group in a VPC (no ingress, all egress)", build: sgCreate,
		example: "azote security-group create --vpc prod --name web --description 'web servers'"},
	{use: "list", short: "list security groups (of one VPC with --vpc)", build: sgList, example: "azote security-group list --vpc prod"},
	{use: "describe GROUP", short: "show one security group and its rules", build: sgDescribe, example: "azote security-group describe web"},
	{use: "delete GROUP", short: "delete a security group no interface has and no rule names", build: sgDelete,
		example: "azote security-group delete web"},
	{use: "authorize-ingress GROUP", short: "allow traffic in from a CIDR or the members of a group", build: sgRules("authorize-ingress"),
		example: "azote security-group authorize-ingress web --protocol tcp --port 22 --cidr 0.0.0.0/0"},
	{use: "authorize-egress GROUP", short: "allow traffic out to a CIDR or the members of a group", build: sgRules("authorize-egress"),
		example: "azote security-group authorize-egress db --protocol tcp --port 5432 --destination-group web"},
	{use: "revoke-ingress GROUP", short: "remove an ingress rule (tracked flows continue)", build: sgRules("revoke-ingress"),
		example: "azote security-group revoke-ingress web --protocol tcp --port 22 --cidr 0.0.0.0/0"},
	{use: "revoke-egress GROUP", short: "remove an egress rule (tracked flows continue)", build: sgRules("revoke-egress"),
		example: "azote security-group revoke-egress web --protocol all --cidr 0.0.0.0/0"},
}

var networkInterfaceCommands = []command{
	{use: "create", short: "create a network interface in a subnet", build: eniCreate,
		example: "azote network-interface create --subnet front --security-group web --private-ip 10.0.1.20"},
	{use: "list", short: "list network interfaces (of one VPC with --vpc)", build: eniList, example: "azote network-interface list --vpc prod"},
	{use: "describe INTERFACE", short: "show one network interface", build: eniDescribe,
		example: "azote network-interface describe eni-0a1b2c3d4e5f60718"},
	{use: "delete INTERFACE", short: "delete a network interface that is not attached", build: eniDelete,
		example: "azote network-interface delete eni-0a1b2c3d4e5f60718"},
	{use: "attach INTERFACE", short: "attach a network interface to a stopped instance", build: eniAttach,
		example: "azote network-interface attach eni-0a1b2c3d4e5f60718 --instance web"},
	{use: "detach INTERFACE", short: "detach a network interface from its stopped instance", build: eniDetach,
		example: "azote network-interface detach eni-0a1b2c3d4e5f60718"},
}

func vpcCreate(e *env, fs *pflag.FlagSet) runFunc {
	var req api.CreateVPCRequest
	fs.StringVar(&req.CIDR, "cidr", "", "the VPC's IPv4 block, /16 to /28, e.g. 10.0.0.0/16")
	fs.StringVar(&req.Name, "name", "", "VPC name (default: its id)")
	fs.BoolVar(&req.HostGateway, "host-gateway", false, "give the host an address in the VPC (a tap interface), to reach its instances")
	tags := tagFlag{}
	fs.Var(tags, "tag", "KEY=VALUE label (repeat for more); policies test it as aws:ResourceTag/KEY")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.VPC, error) {
		if req.CIDR == "" {
			return api.VPC{}, usageError{msg: "--cidr is required"}
		}
		if len(tags) > 0 {
			req.Tags = tags
		}
		return e.client.CreateVPC(ctx, req)
	}, showVPC)
}

func showVPC(e *env, v api.VPC) error {
	if e.structured() {
		return e.emit(v)
	}
	rotated := ""
	if v.KeyRotatedAt != nil {
		rotated = v.KeyRotatedAt.Format(time.RFC3339)
	}
	e.kv([][2]string{
		{"ID", v.ID}, {"Name", v.Name}, {"CIDR", v.CIDR}, {"Number", strconv.FormatUint(uint64(v.NumericID), 10)},
		{"Host gateway", onOff(v.HostGateway)}, {"Default security group", v.DefaultSecurityGroup},
		{"Key epoch", keyEpoch(v)}, {"Key rotated", rotated},
		{"Tags", formatTags(v.Tags)}, {"Created", v.CreatedAt.Format(time.RFC3339)},
	})
	return nil
}

// keyEpoch is the epoch cards seal with, and during a rotation the one
// they are moving to.
func keyEpoch(v api.VPC) string {
	e := strconv.FormatUint(uint64(v.KeyEpoch), 10)
	if v.NextKeyEpoch != 0 {
		e += " (rotating to " + strconv.FormatUint(uint64(v.NextKeyEpoch), 10) + ")"
	}
	return e
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func vpcList(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) ([]api.VPC, error) {
		return e.client.ListVPCs(ctx)
	}, func(e *env, list []api.VPC) error {
		var rows [][]string
		for _, v := range list {
			rows = append(rows, []string{v.ID, v.Name, v.CIDR, onOff(v.HostGateway), keyEpoch(v), ago(v.CreatedAt)})
		}
		return e.list(list, "ID\tNAME\tCIDR\tHOST_GATEWAY\tKEY_EPOCH\tCREATED", rows)
	})
}

func vpcDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.VPC, error) {
		return e.client.DescribeVPC(ctx, pos[0])
	}, showVPC)
}

func vpcDelete(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.VPC, error) {
		return e.client.DeleteVPC(ctx, pos[0])
	}, showVPC)
}

func vpcModify(e *env, fs *pflag.FlagSet) runFunc {
	var req api.ModifyVPCRequest
	fs.Func("host-gateway", "true or false", setBool(&req.HostGateway))
	return callThenShow(e, func(ctx context.Context, pos []string) (api.VPC, error) {
		if req.HostGateway == nil {
			return api.VPC{}, usageError{msg: "nothing to change: give --host-gateway=true|false"}
		}
		return e.client.ModifyVPC(ctx, pos[0], req)
	}, showVPC)
}

func vpcRotateKey(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.VPC, error) {
		return e.client.RotateVPCKey(ctx, pos[0])
	}, showVPC)
}

func subnetCreate(e *env, fs *pflag.FlagSet) runFunc {
	var req api.CreateSubnetRequest
	fs.StringVar(&req.VPC, "vpc", "", "VPC id or name")
	fs.StringVar(&req.CIDR, "cidr", "", "the subnet's IPv4 block inside the VPC's, /16 to /28, e.g. 10.0.1.0/24")
	fs.StringVar(&req.Name, "name", "", "subnet name (default: its id)")
	tags := tagFlag{}
	fs.Var(tags, "tag", "KEY=VALUE label (repeat for more); policies test it as aws:ResourceTag/KEY")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Subnet, error) {
		if req.VPC == "" || req.CIDR == "" {
			return api.Subnet{}, usageError{msg: "--vpc and --cidr are required"}
		}
		if len(tags) > 0 {
			req.Tags = tags
		}
		return e.client.CreateSubnet(ctx, req)
	}, showSubnet)
}

func showSubnet(e *env, s api.Subnet) error {
	if e.structured() {
		return e.emit(s)
	}
	e.kv([][2]string{
		{"ID", s.ID}, {"Name", s.Name}, {"VPC", s.VPCID}, {"CIDR", s.CIDR}, {"Gateway", s.Gateway},
		{"Available addresses", strconv.Itoa(s.AvailableAddresses)}, {"Tags", formatTags(s.Tags)},
		{"Created", s.CreatedAt.Format(time.RFC3339)},
	})
	return nil
}

func subnetList(e *env, fs *pflag.FlagSet) runFunc {
	vpc := fs.String("vpc", "", "only the subnets of this VPC (id or name)")
	return callThenShow(e, func(ctx context.Context, pos []string) ([]api.Subnet, error) {
		return e.client.ListSubnets(ctx, *vpc)
	}, func(e *env, list []api.Subnet) error {
		var rows [][]string
		for _, s := range list {
			rows = append(rows, []string{s.ID, s.Name, s.VPCID, s.CIDR, s.Gateway, strconv.Itoa(s.AvailableAddresses), ago(s.CreatedAt)})
		}
		return e.list(list, "ID\tNAME\tVPC\tCIDR\tGATEWAY\tAVAILABLE\tCREATED", rows)
	})
}

func subnetDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Subnet, error) {
		return e.client.DescribeSubnet(ctx, pos[0])
	}, showSubnet)
}

func subnetDelete(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Subnet, error) {
		return e.client.DeleteSubnet(ctx, pos[0])
	}, showSubnet)
}

func sgCreate(e *env, fs *pflag.FlagSet) runFunc {
	var req api.CreateSecurityGroupRequest
	fs.StringVar(&req.VPC, "vpc", "", "VPC id or name")
	fs.StringVar(&req.Name, "name", "", "group name, unique in its VPC")
	fs.StringVar(&req.Description, "description", "", "what the group is for")
	tags := tagFlag{}
	fs.Var(tags, "tag", "KEY=VALUE label (repeat for more); policies test it as aws:ResourceTag/KEY")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.SecurityGroup, error) {
		if req.VPC == "" || req.Name == "" {
			return api.SecurityGroup{}, usageError{msg: "--vpc and --name are required"}
		}
		if len(tags) > 0 {
			req.Tags = tags
		}
		return e.client.CreateSecurityGroup(ctx, req)
	}, showGroup)
}

// ruleText renders a rule: "tcp 22 0.0.0.0/0", "icmp type 8 sg-…".
func ruleText(r api.SecurityGroupRule) string {
	var ports string
	switch r.Protocol {
	case api.ProtocolTCP, api.ProtocolUDP:
		ports = strconv.Itoa(r.FromPort)
		if r.ToPort != r.FromPort {
			ports += "-" + strconv.Itoa(r.ToPort)
		}
	case api.ProtocolICMP:
		switch {
		case r.FromPort == api.AnyPort:
			ports = "any type"
		case r.ToPort == api.AnyPort:
			ports = "type " + strconv.Itoa(r.FromPort)
		default:
			ports = fmt.Sprintf("type %d code %d", r.FromPort, r.ToPort)
		}
	}
	peer := r.CIDR
	if peer == "" {
		peer = "group " + r.Group
	}
	return strings.Join(strings.Fields(r.Protocol+" "+ports+" "+peer), " ")
}

func showGroup(e *env, g api.SecurityGroup) error {
	if e.structured() {
		return e.emit(g)
	}
	pairs := [][2]string{
		{"ID", g.ID}, {"Name", g.Name}, {"Description", g.Description}, {"VPC", g.VPCID},
		{"Default", func() string {
			if g.Default {
				return "yes (deleted with its VPC)"
			}
			return ""
		}()},
		{"Tags", formatTags(g.Tags)}, {"Created", g.CreatedAt.Format(time.RFC3339)},
	}
	rules := func(label, none string, rs []api.SecurityGroupRule) {
		if len(rs) == 0 {
			pairs = append(pairs, [2]string{label, none})
		}
		for i, r := range rs {
			l := ""
			if i == 0 {
				l = label
			}
			pairs = append(pairs, [2]string{l, ruleText(r)})
		}
	}
	rules("Ingress", "none (nothing may come in)", g.Ingress)
	rules("Egress", "none (nothing may go out)", g.Egress)
	e.kvBlank(pairs)
	return nil
}

// kvBlank is kv where an empty key continues the line before it.
func (e *env) kvBlank(pairs [][2]string) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, p := range pairs {
		switch {
		case p[1] == "":
		case p[0] == "":
			fmt.Fprintf(tw, "\t%s\n", p[1])
		default:
			fmt.Fprintf(tw, "%s:\t%s\n", p[0], p[1])
		}
	}
	tw.Flush()
}

func sgList(e *env, fs *pflag.FlagSet) runFunc {
	vpc := fs.String("vpc", "", "only the groups of this VPC (id or name)")
	return callThenShow(e, func(ctx context.Context, pos []string) ([]api.SecurityGroup, error) {
		return e.client.ListSecurityGroups(ctx, *vpc)
	}, func(e *env, list []api.SecurityGroup) error {
		var rows [][]string
		for _, g := range list {
			rows = append(rows, []string{g.ID, g.Name, g.VPCID, strconv.Itoa(len(g.Ingress)), strconv.Itoa(len(g.Egress)), g.Description})
		}
		return e.list(list, "ID\tNAME\tVPC\tINGRESS\tEGRESS\tDESCRIPTION", rows)
	})
}

func sgDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.SecurityGroup, error) {
		return e.client.DescribeSecurityGroup(ctx, pos[0])
	}, showGroup)
}

func sgDelete(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.SecurityGroup, error) {
		return e.client.DeleteSecurityGroup(ctx, pos[0])
	}, showGroup)
}

// ruleFlags are the flags of one rule.
type ruleFlags struct {
	protocol, port, cidr, group string
	icmpType, icmpCode          int
}

// rule builds the rule the flags describe: tcp and udp take --port N or
// N-M (every port when absent), icmp --icmp-type and --icmp-code (any
// when absent), all nothing; the peer is --cidr or a group.
func (f ruleFlags) rule(groupFlag string) (api.SecurityGroupRule, error) {
	r := api.SecurityGroupRule{Protocol: strings.ToLower(f.protocol), CIDR: f.cidr, Group: f.group}
	if (f.cidr == "") == (f.group == "") {
		return r, usageError{msg: "give --cidr or --" + groupFlag + " (one of them)"}
	}
	switch r.Protocol {
	case api.ProtocolTCP, api.ProtocolUDP:
		r.FromPort, r.ToPort = 0, 65535
		if f.port != "" {
			from, to, err := parsePorts(f.port)
			if err != nil {
				return r, err
			}
			r.FromPort, r.ToPort = from, to
		}
	case api.ProtocolICMP:
		if f.port != "" {
			return r, usageError{msg: "icmp has no ports: give --icmp-type and --icmp-code"}
		}
		r.FromPort, r.ToPort = f.icmpType, f.icmpCode
	case api.ProtocolAll, "-1":
		if f.port != "" {
			return r, usageError{msg: "protocol all has no ports"}
		}
		r.FromPort, r.ToPort = api.AnyPort, api.AnyPort
	case "":
		return r, usageError{msg: "--protocol is required: tcp, udp, icmp or all"}
	default:
		return r, usageError{msg: fmt.Sprintf("--protocol %q: want tcp, udp, icmp or all", f.protocol)}
	}
	if r.Protocol != api.ProtocolICMP && (f.icmpType != api.AnyPort || f.icmpCode != api.AnyPort) {
		return r, usageError{msg: "--icmp-type and --icmp-code are for --protocol icmp"}
	}
	return r, nil
}

// parsePorts reads 22 or 1000-2000.
func parsePorts(s string) (int, int, error) {
	a, b, ranged := strings.Cut(s, "-")
	from, err1 := strconv.Atoi(a)
	to, err2 := from, error(nil)
	if ranged {
		to, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || from < 0 || to > 65535 || from > to {
		return 0, 0, usageError{msg: fmt.Sprintf("--port %q: want a port (22) or a range (1000-2000) within 0-65535", s)}
	}
	return from, to, nil
}

// sgRules builds one of the four rule verbs.
func sgRules(action string) func(e *env, fs *pflag.FlagSet) runFunc {
	return func(e *env, fs *pflag.FlagSet) runFunc {
		var f ruleFlags
		fs.StringVar(&f.protocol, "protocol", "", "tcp, udp, icmp or all")
		fs.StringVar(&f.port, "port", "", "tcp/udp: a port (22) or a range (1000-2000); every port when absent")
		fs.IntVar(&f.icmpType, "icmp-type", api.AnyPort, "icmp: the ICMP type (8 is echo request); -1 for any")
		fs.IntVar(&f.icmpCode, "icmp-code", api.AnyPort, "icmp: the ICMP code; -1 for any")
		fs.StringVar(&f.cidr, "cidr", "", "the IPv4 block the rule allows, e.g. 0.0.0.0/0")
		groupFlag := "source-group"
		help := "the security group (id or name, of the same VPC) whose members the traffic may come from"
		if strings.HasSuffix(action, "egress") {
			groupFlag = "destination-group"
			help = "the security group (id or name, of the same VPC) whose members the traffic may go to"
		}
		fs.StringVar(&f.group, groupFlag, "", help)
		return callThenShow(e, func(ctx context.Context, pos []string) (api.SecurityGroup, error) {
			r, err := f.rule(groupFlag)
			if err != nil {
				return api.SecurityGroup{}, err
			}
			return e.client.SecurityGroupRules(ctx, pos[0], action, []api.SecurityGroupRule{r})
		}, showGroup)
	}
}

func eniCreate(e *env, fs *pflag.FlagSet) runFunc {
	var req api.CreateNetworkInterfaceRequest
	fs.StringVar(&req.Subnet, "subnet", "", "subnet id or name")
	fs.StringArrayVar(&req.SecurityGroups, "security-group", nil, "security group (id or name) of the subnet's VPC; repeat for more (default: the VPC's default group)")
	fs.StringVar(&req.PrivateIP, "private-ip", "", "the address, inside the subnet and free (default: the lowest free one)")
	fs.StringVar(&req.Name, "name", "", "interface name (default: its id)")
	tags := tagFlag{}
	fs.Var(tags, "tag", "KEY=VALUE label (repeat for more); policies test it as aws:ResourceTag/KEY")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.NetworkInterface, error) {
		if req.Subnet == "" {
			return api.NetworkInterface{}, usageError{msg: "--subnet is required"}
		}
		if len(tags) > 0 {
			req.Tags = tags
		}
		return e.client.CreateNetworkInterface(ctx, req)
	}, showInterface)
}

func showInterface(e *env, n api.NetworkInterface) error {
	if e.structured() {
		return e.emit(n)
	}
	att := ""
	if a := n.Attachment; a != nil {
		att = fmt.Sprintf("%s, device index %d", a.InstanceID, a.DeviceIndex)
		if a.DeleteOnTermination {
			att += " (deleted with the instance)"
		}
	}
	if n.Type == api.InterfaceTypeHostGateway {
		att = "the host " + n.Host + " (its gateway into the VPC)"
	}
	e.kv([][2]string{
		{"ID", n.ID}, {"Name", n.Name}, {"VPC", n.VPCID}, {"Subnet", n.SubnetID}, {"Private IP", n.PrivateIP}, {"MAC", n.MAC},
		{"Security groups", strings.Join(n.SecurityGroups, ", ")}, {"Status", n.Status}, {"Attached to", att},
		{"Number", strconv.FormatUint(uint64(n.NumericID), 10)}, {"Host", n.Host}, {"Tags", formatTags(n.Tags)},
		{"Created", n.CreatedAt.Format(time.RFC3339)},
	})
	return nil
}

func eniList(e *env, fs *pflag.FlagSet) runFunc {
	vpc := fs.String("vpc", "", "only the interfaces of this VPC (id or name)")
	return callThenShow(e, func(ctx context.Context, pos []string) ([]api.NetworkInterface, error) {
		return e.client.ListNetworkInterfaces(ctx, *vpc)
	}, func(e *env, list []api.NetworkInterface) error {
		var rows [][]string
		for _, n := range list {
			inst := ""
			switch {
			case n.Attachment != nil:
				inst = fmt.Sprintf("%s:%d", n.Attachment.InstanceID, n.Attachment.DeviceIndex)
			case n.Type == api.InterfaceTypeHostGateway:
				inst = "(host gateway)"
			}
			rows = append(rows, []string{n.ID, n.Name, n.SubnetID, n.PrivateIP, n.MAC, n.Status, inst, n.Host})
		}
		return e.list(list, "ID\tNAME\tSUBNET\tPRIVATE_IP\tMAC\tSTATUS\tINSTANCE\tHOST", rows)
	})
}

func eniDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.NetworkInterface, error) {
		return e.client.DescribeNetworkInterface(ctx, pos[0])
	}, showInterface)
}

func eniDelete(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.NetworkInterface, error) {
		return e.client.DeleteNetworkInterface(ctx, pos[0])
	}, showInterface)
}

func eniAttach(e *env, fs *pflag.FlagSet) runFunc {
	var req api.AttachNetworkInterfaceRequest
	fs.StringVar(&req.Instance, "instance", "", "instance id or name (stopped)")
	idx := fs.Int("device-index", -1, "the interface's slot on the instance, 0 the primary (default: the lowest free one)")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.NetworkInterface, error) {
		if req.Instance == "" {
			return api.NetworkInterface{}, usageError{msg: "--instance is required"}
		}
		if *idx >= 0 {
			req.DeviceIndex = idx
		}
		return e.client.NetworkInterfaceAction(ctx, pos[0], "attach", req)
	}, showInterface)
}

func eniDetach(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.NetworkInterface, error) {
		return e.client.NetworkInterfaceAction(ctx, pos[0], "detach", nil)
	}, showInterface)
}
