package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/vpcs"
)

// netStub answers the network routes with what it was handed, and
// records it: refs starting "nope" name nothing, eni-in is attached to
// i-theirs, and vpc-busy cannot be deleted.
type netStub struct {
	stubBackend
	mu    sync.Mutex
	calls []string
}

func (s *netStub) called(c string) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}

func (s *netStub) ResolveID(_ context.Context, _, ref string) (string, map[string]string, bool) {
	return ref, nil, !strings.HasPrefix(ref, "nope")
}
func (s *netStub) RunInstance(_ context.Context, r api.RunInstanceRequest) (api.Instance, error) {
	s.called("run " + r.Subnet + " " + strings.Join(r.SecurityGroups, ","))
	return api.Instance{ID: "i-new"}, nil
}
func (s *netStub) CreateVPC(_ context.Context, r api.CreateVPCRequest) (api.VPC, error) {
	s.called("create-vpc " + r.CIDR)
	return api.VPC{ID: "vpc-new", CIDR: r.CIDR}, nil
}
func (s *netStub) DeleteVPC(_ context.Context, id string) (api.VPC, error) {
	s.called("delete-vpc " + id)
	if id == "vpc-busy" {
		return api.VPC{}, refusal.New(vpcs.ErrDependencyViolation, "VPC vpc-busy has subnets")
	}
	return api.VPC{ID: id, CIDR: "10.0.0.0/16"}, nil
}
func (s *netStub) CreateSubnet(_ context.Context, r api.CreateSubnetRequest) (api.Subnet, error) {
	s.called("create-subnet " + r.VPC)
	return api.Subnet{ID: "subnet-new", VPCID: r.VPC}, nil
}
func (s *netStub) ListSubnets(_ context.Context, vpc string) ([]api.Subnet, error) {
	s.called("list-subnets " + vpc)
	return []api.Subnet{}, nil
}
func (s *netStub) SecurityGroupRules(_ context.Context, id, dir string, add bool, r api.SecurityGroupRulesRequest) (api.SecurityGroup, error) {
	s.called("rules " + id + " " + dir + " " + map[bool]string{true: "add", false: "remove"}[add] + " " + r.Rules[0].Protocol)
	return api.SecurityGroup{ID: id}, nil
}
func (s *netStub) CreateNetworkInterface(_ context.Context, r api.CreateNetworkInterfaceRequest) (api.NetworkInterface, error) {
	s.called("create-eni " + r.Subnet + " " + strings.Join(r.SecurityGroups, ","))
	return api.NetworkInterface{ID: "eni-new"}, nil
}
func (s *netStub) DescribeNetworkInterface(_ context.Context, id string) (api.NetworkInterface, error) {
	if id == "eni-in" {
		return api.NetworkInterface{ID: id, Attachment: &api.NetworkInterfaceAttachment{InstanceID: "i-theirs"}}, nil
	}
	return api.NetworkInterface{ID: id}, nil
}
func (s *netStub) AttachNetworkInterface(_ context.Context, id string, r api.AttachNetworkInterfaceRequest) (api.NetworkInterface, error) {
	s.called("attach " + id + " " + r.Instance)
	return api.NetworkInterface{ID: id, Attachment: &api.NetworkInterfaceAttachment{InstanceID: r.Instance}}, nil
}
func (s *netStub) DetachNetworkInterface(_ context.Context, id string) (api.NetworkInterface, error) {
	s.called("detach " + id)
	return api.NetworkInterface{ID: id}, nil
}

// decisions records every (action, resource) the gateway asks about and
// denies the resources it names.
type decisions struct {
	allowAll
	denied map[string]bool
	mu     sync.Mutex
	asked  []string
}

func (d *decisions) Authorize(_ *api.Caller, action, resource string, _ map[string][]string) (bool, string) {
	d.mu.Lock()
	d.asked = append(d.asked, action+" "+strings.TrimPrefix(resource, "arn:azote:compute::123456789012:"))
	d.mu.Unlock()
	if d.denied[resource] {
		return false, "denied by test"
	}
	return true, ""
}

// The network routes are authorised on every object they involve (the
// VPC a subnet or group is made in, the subnet and groups of an
// interface or a launch, the instance of an attachment), each with the
// action EC2 would evaluate, and audited with every one of them.
func TestNetworkAuthorisedAndAudited(t *testing.T) {
	arn := func(r string) string { return "arn:azote:compute::123456789012:" + r }
	for _, c := range []struct {
		method, path, body string
		want               int
		event              string
		asked              []string // action resource, in order
		call               string   // what the backend was handed, "" for nothing
	}{
		{"POST", "/v1/vpcs", `{"cidr":"10.0.0.0/16","tags":{"team":"a"}}`, 200, "CreateVpc",
			[]string{"compute:CreateVpc vpc/*"}, "create-vpc 10.0.0.0/16"},
		{"POST", "/v1/subnets", `{"vpc":"vpc-theirs","cidr":"10.0.1.0/24"}`, 403, "CreateSubnet",
			[]string{"compute:CreateSubnet subnet/*", "compute:CreateSubnet vpc/vpc-theirs"}, ""},
		{"POST", "/v1/subnets", `{"vpc":"vpc-mine","cidr":"10.0.1.0/24"}`, 200, "CreateSubnet",
			[]string{"compute:CreateSubnet subnet/*", "compute:CreateSubnet vpc/vpc-mine"}, "create-subnet vpc-mine"},
		{"POST", "/v1/subnets", `{"vpc":"nope","cidr":"10.0.1.0/24"}`, 404, "CreateSubnet",
			[]string{"compute:CreateSubnet subnet/*", "compute:CreateSubnet vpc/nope"}, ""},
		{"POST", "/v1/network-interfaces", `{"subnet":"subnet-mine","security_groups":["sg-mine","sg-theirs"]}`, 403, "CreateNetworkInterface",
			[]string{"compute:CreateNetworkInterface network-interface/*", "compute:CreateNetworkInterface subnet/subnet-mine",
				"compute:CreateNetworkInterface security-group/sg-mine", "compute:CreateNetworkInterface security-group/sg-theirs"}, ""},
		{"POST", "/v1/network-interfaces", `{"subnet":"subnet-mine","security_groups":["sg-mine"]}`, 200, "CreateNetworkInterface",
			[]string{"compute:CreateNetworkInterface network-interface/*", "compute:CreateNetworkInterface subnet/subnet-mine",
				"compute:CreateNetworkInterface security-group/sg-mine"}, "create-eni subnet-mine sg-mine"},
		{"POST", "/v1/network-interfaces/eni-mine/attach", `{"instance":"i-theirs"}`, 403, "AttachNetworkInterface",
			[]string{"compute:AttachNetworkInterface network-interface/eni-mine", "compute:AttachNetworkInterface instance/i-theirs"}, ""},
		{"POST", "/v1/network-interfaces/eni-mine/attach", `{"instance":"i-mine"}`, 200, "AttachNetworkInterface",
			[]string{"compute:AttachNetworkInterface network-interface/eni-mine", "compute:AttachNetworkInterface instance/i-mine"}, "attach eni-mine i-mine"},
		{"POST", "/v1/network-interfaces/eni-in/detach", ``, 403, "DetachNetworkInterface",
			[]string{"compute:DetachNetworkInterface network-interface/eni-in", "compute:DetachNetworkInterface instance/i-theirs"}, ""},
		{"POST", "/v1/network-interfaces/eni-free/detach", `{}`, 200, "DetachNetworkInterface",
			[]string{"compute:DetachNetworkInterface network-interface/eni-free"}, "detach eni-free"},
		// A launch into a subnet: RunInstances on the subnet and groups,
		// AttachVolume on its volumes.
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"volumes":[{"volume":"vol-mine"}],"subnet":"subnet-mine","security_groups":["sg-theirs"]}`, 403, "RunInstances",
			[]string{"compute:RunInstances instance/*", "compute:AttachVolume volume/vol-mine", "compute:RunInstances subnet/subnet-mine",
				"compute:RunInstances security-group/sg-theirs"}, ""},
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"subnet":"subnet-mine","security_groups":["sg-mine"]}`, 200, "RunInstances",
			[]string{"compute:RunInstances instance/*", "compute:RunInstances subnet/subnet-mine", "compute:RunInstances security-group/sg-mine"},
			"run subnet-mine sg-mine"},
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"subnet":"nope-subnet"}`, 404, "RunInstances",
			[]string{"compute:RunInstances instance/*", "compute:RunInstances subnet/nope-subnet"}, ""},
		{"POST", "/v1/security-groups/sg-mine/authorize-ingress", `{"rules":[{"protocol":"tcp","from_port":22,"to_port":22,"cidr":"0.0.0.0/0"}]}`, 200,
			"AuthorizeSecurityGroupIngress", []string{"compute:AuthorizeSecurityGroupIngress security-group/sg-mine"}, "rules sg-mine ingress add tcp"},
		{"POST", "/v1/security-groups/sg-mine/revoke-egress", `{"rules":[{"protocol":"all","cidr":"0.0.0.0/0"}]}`, 200,
			"RevokeSecurityGroupEgress", []string{"compute:RevokeSecurityGroupEgress security-group/sg-mine"}, "rules sg-mine egress remove all"},
		{"POST", "/v1/security-groups/sg-theirs/authorize-egress", `{"rules":[{"protocol":"all","cidr":"0.0.0.0/0"}]}`, 403,
			"AuthorizeSecurityGroupEgress", []string{"compute:AuthorizeSecurityGroupEgress security-group/sg-theirs"}, ""},
		{"DELETE", "/v1/vpcs/vpc-busy", ``, 409, "DeleteVpc", []string{"compute:DeleteVpc vpc/vpc-busy"}, "delete-vpc vpc-busy"},
		{"DELETE", "/v1/vpcs/nope", ``, 404, "DeleteVpc", []string{"compute:DeleteVpc vpc/nope"}, ""},
		{"GET", "/v1/subnets?vpc=vpc-mine", ``, 200, "DescribeSubnets", []string{"compute:DescribeSubnets *"}, "list-subnets vpc-mine"},
	} {
		trail := &memTrail{}
		b := &netStub{}
		auth := &decisions{denied: map[string]bool{arn("vpc/vpc-theirs"): true, arn("security-group/sg-theirs"): true, arn("instance/i-theirs"): true}}
		h := localHandler(b, auth, trail)
		code, out := do(t, h, c.method, c.path, []byte(c.body))
		name := c.method + " " + c.path + " " + c.body
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", name, code, out, c.want)
			continue
		}
		if !slices.Equal(auth.asked, c.asked) {
			t.Errorf("%s: asked\n %q\nwant\n %q", name, auth.asked, c.asked)
		}
		var wantCalls []string
		if c.call != "" {
			wantCalls = []string{c.call}
		}
		if !slices.Equal(b.calls, wantCalls) {
			t.Errorf("%s: backend handed %q, want %q", name, b.calls, wantCalls)
		}
		if len(trail.recs) != 1 {
			t.Errorf("%s: %d records", name, len(trail.recs))
			continue
		}
		rec := trail.last()
		if rec.EventName != c.event || rec.EventSource != "compute.azote" {
			t.Errorf("%s: audited as %s/%s", name, rec.EventSource, rec.EventName)
		}
		var res []string
		for _, r := range rec.Resources {
			res = append(res, strings.TrimPrefix(r.ARN, arn("")))
		}
		var want []string
		for _, a := range c.asked {
			if _, r, _ := strings.Cut(a, " "); r != "*" {
				want = append(want, r)
			}
		}
		if !slices.Equal(res, want) {
			t.Errorf("%s: audited resources %q, want %q", name, res, want)
		}
		var e api.Error
		json.Unmarshal(out, &e)
		if code != 200 && rec.ErrorCode != string(e.Code) {
			t.Errorf("%s: audited %q, answered %q", name, rec.ErrorCode, e.Code)
		}
		switch c.want {
		case http.StatusConflict:
			if e.Code != api.CodeDependencyViolation || !strings.Contains(e.Message, "has subnets") {
				t.Errorf("%s: %s", name, out)
			}
		case http.StatusNotFound:
			if !strings.HasSuffix(string(e.Code), "NotFound") {
				t.Errorf("%s: %s", name, out)
			}
		}
		if c.want == 200 && c.method != "GET" && len(rec.ResponseElements) == 0 {
			t.Errorf("%s: no response elements audited", name)
		}
	}
}

func (b *raceBackend) DeleteVPC(_ context.Context, ref string) (api.VPC, error) {
	return api.VPC{ID: ref}, b.act(kindVPC, ref)
}
func (b *raceBackend) AttachNetworkInterface(_ context.Context, ref string, r api.AttachNetworkInterfaceRequest) (api.NetworkInterface, error) {
	if err := b.act(kindInterface, ref); err != nil {
		return api.NetworkInterface{}, err
	}
	return api.NetworkInterface{ID: ref}, b.act(kindInstance, r.Instance)
}
