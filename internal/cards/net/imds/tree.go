package imds

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/azote/azote/internal/cards/cardproto"
)

// Data is one compiled version of an instance's metadata: every path the
// service answers, with its body, made once when azoted sends it so that
// a request is one map lookup.
type Data struct {
	paths map[string][]byte // "latest/meta-data/instance-id" → body
	// TTL is the IP TTL of every answer (the hop limit).
	TTL uint8
	// Optional: a GET without a token is answered (IMDSv1).
	Optional bool
}

// Hop limits, as EC2 takes them (HttpPutResponseHopLimit).
const (
	DefaultHopLimit = 1
	MaxHopLimit     = 64
)

// MaxUserData is EC2's bound on user data.
const MaxUserData = 16 << 10

// Compile checks md and makes the tree the service answers from. mac and
// ip are the interface the card serves (NetState.Self): the top-level mac
// and local-ipv4 are its own.
func Compile(md *cardproto.NetMetadata, mac string, ip netip.Addr) (*Data, error) {
	d := &Data{paths: map[string][]byte{}, TTL: DefaultHopLimit}
	switch md.HTTPTokens {
	case "", "required":
	case "optional":
		d.Optional = true
	default:
		return nil, fmt.Errorf("metadata: http tokens %q (required or optional)", md.HTTPTokens)
	}
	switch {
	case md.HopLimit == 0:
	case md.HopLimit >= 1 && md.HopLimit <= MaxHopLimit:
		d.TTL = uint8(md.HopLimit)
	default:
		return nil, fmt.Errorf("metadata: hop limit %d (1 to %d)", md.HopLimit, MaxHopLimit)
	}
	if len(md.UserData) > MaxUserData {
		return nil, fmt.Errorf("metadata: %d bytes of user data (at most %d)", len(md.UserData), MaxUserData)
	}
	mac = strings.ToLower(mac)
	t := tree{}
	m := "latest/meta-data/"
	t.leaf(m+"ami-id", md.ImageID)
	t.leaf(m+"instance-id", md.InstanceID)
	t.leaf(m+"instance-type", md.InstanceType)
	t.leaf(m+"hostname", md.Hostname)
	t.leaf(m+"local-hostname", md.Hostname)
	t.leaf(m+"local-ipv4", ip.String())
	t.leaf(m+"mac", mac)
	t.leaf(m+"placement/availability-zone", md.AvailabilityZone)
	t.leaf(m+"placement/region", md.Region)
	seen := map[string]bool{}
	for i := range md.Interfaces {
		ifc := &md.Interfaces[i]
		im := strings.ToLower(ifc.MAC)
		if !validName(im) || seen[im] {
			return nil, fmt.Errorf("metadata: interface MAC %q", ifc.MAC)
		}
		seen[im] = true
		p := m + "network/interfaces/macs/" + im + "/"
		t.leaf(p+"device-number", strconv.Itoa(ifc.DeviceNumber))
		t.leaf(p+"interface-id", ifc.InterfaceID)
		t.leaf(p+"local-ipv4s", ifc.LocalIPv4)
		t.leaf(p+"mac", im)
		t.leaf(p+"subnet-id", ifc.SubnetID)
		t.leaf(p+"subnet-ipv4-cidr-block", ifc.SubnetCIDR)
		t.leaf(p+"vpc-id", ifc.VPCID)
		t.leaf(p+"vpc-ipv4-cidr-block", ifc.VPCCIDR)
		t.leaf(p+"vpc-ipv4-cidr-blocks", ifc.VPCCIDR)
		t.leaf(p+"security-groups", strings.Join(ifc.SecurityGroups, "\n"))
		t.leaf(p+"security-group-ids", strings.Join(ifc.SecurityGroupIDs, "\n"))
		if im == mac {
			t.leaf(m+"security-groups", strings.Join(ifc.SecurityGroups, "\n"))
		}
	}
	if len(md.PublicKeys) > 0 {
		var list []string
		for i, k := range md.PublicKeys {
			if strings.ContainsAny(k.Name, "\n\r") || k.OpenSSH == "" {
				return nil, fmt.Errorf("metadata: public key %d", i)
			}
			list = append(list, fmt.Sprintf("%d=%s", i, k.Name))
			t.leaf(fmt.Sprintf("%spublic-keys/%d/openssh-key", m, i), k.OpenSSH)
		}
		// public-keys/ lists "N=NAME", not the directories under it.
		t.listing(m+"public-keys", strings.Join(list, "\n"))
	}
	if r := md.Role; r != nil {
		if !validName(r.RoleName) {
			return nil, fmt.Errorf("metadata: role name %q", r.RoleName)
		}
		info, err := json.MarshalIndent(struct {
			Code               string
			LastUpdated        string
			InstanceProfileArn string
			InstanceProfileId  string
		}{"Success", r.LastUpdated, r.InstanceProfileARN, r.InstanceProfileID}, "", "  ")
		if err != nil {
			return nil, err
		}
		creds, err := json.MarshalIndent(struct {
			Code            string
			LastUpdated     string
			Type            string
			AccessKeyId     string
			SecretAccessKey string
			Token           string
			Expiration      string
		}{"Success", r.LastUpdated, "AWS-HMAC", r.AccessKeyID, r.SecretAccessKey, r.Token, r.Expiration}, "", "  ")
		if err != nil {
			return nil, err
		}
		t.leaf(m+"iam/info", string(info))
		t.leaf(m+"iam/security-credentials/"+r.RoleName, string(creds))
	}
	t.dir("latest/dynamic")
	if len(md.IdentityDocument) > 0 {
		t.leaf("latest/dynamic/instance-identity/document", string(md.IdentityDocument))
		t.leaf("latest/dynamic/instance-identity/signature", md.IdentitySignature)
	}
	t.dir("latest/meta-data")
	if len(md.UserData) > 0 {
		t.leaf("latest/user-data", string(md.UserData))
	}
	t.listing("latest", "dynamic\nmeta-data\nuser-data")
	t.compile(d.paths)
	return d, nil
}

// validName: a path element azoted names (a MAC, a role) may not walk the
// tree.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\n\r")
}

// tree collects leaves and directories; a directory's listing is its
// children, directories with a trailing "/", unless set by listing.
type tree struct {
	leaves   map[string]string
	children map[string]map[string]bool // dir → child name ("x" or "x/")
	fixed    map[string]string          // dir → its listing, as given
}

func (t *tree) leaf(path, body string) {
	if t.leaves == nil {
		t.leaves, t.children, t.fixed = map[string]string{}, map[string]map[string]bool{}, map[string]string{}
	}
	t.leaves[path] = body
	t.link(path, false)
}

func (t *tree) dir(path string) {
	if t.leaves == nil {
		t.leaves, t.children, t.fixed = map[string]string{}, map[string]map[string]bool{}, map[string]string{}
	}
	if t.children[path] == nil {
		t.children[path] = map[string]bool{}
	}
	t.link(path, true)
}

func (t *tree) listing(path, body string) {
	t.dir(path)
	t.fixed[path] = body
}

// link records path in its parent, and the parent in its own, up to
// "latest".
func (t *tree) link(path string, isDir bool) {
	for {
		i := strings.LastIndexByte(path, '/')
		if i < 0 {
			return
		}
		parent, name := path[:i], path[i+1:]
		if isDir {
			name += "/"
		}
		c := t.children[parent]
		if c == nil {
			c = map[string]bool{}
			t.children[parent] = c
		}
		c[name] = true
		path, isDir = parent, true
	}
}

func (t *tree) compile(out map[string][]byte) {
	for p, b := range t.leaves {
		out[p] = []byte(b)
	}
	for p, c := range t.children {
		if f, ok := t.fixed[p]; ok {
			out[p] = []byte(f)
			continue
		}
		names := make([]string, 0, len(c))
		for n := range c {
			names = append(names, n)
		}
		sort.Strings(names)
		out[p] = []byte(strings.Join(names, "\n"))
	}
	out[""] = []byte("latest")
}

// lookup returns the body at a request's path ("/latest/meta-data/"):
// a directory answers with or without its trailing slash, as EC2's do.
func (d *Data) lookup(path string) ([]byte, bool) {
	p := strings.TrimPrefix(path, "/")
	p = strings.TrimSuffix(p, "/")
	if strings.Contains(p, "//") {
		return nil, false
	}
	b, ok := d.paths[p]
	return b, ok
}
