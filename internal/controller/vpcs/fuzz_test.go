package vpcs

import (
	"net/netip"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// FuzzNormalizeRule feeds rules as a client may send them: a rule that
// is accepted is in its one stored form (normalising it again changes
// nothing) and within the bounds the net card relies on.
func FuzzNormalizeRule(f *testing.F) {
	f.Add("tcp", 22, 22, "0.0.0.0/0", "")
	f.Add("ICMP", 8, -1, "10.0.0.0/8", "")
	f.Add("-1", 0, 0, "", "web")
	f.Add("udp", 0, 65535, "10.0.0.1/8", "")
	f.Add("all", -1, -1, "", "sg-0123456789abcdef0")
	fx := newFixture(f)
	v, err := fx.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.0.0.0/16"})
	if err != nil {
		f.Fatal(err)
	}
	g, err := fx.s.CreateSecurityGroup(api.CreateSecurityGroupRequest{VPC: v.ID, Name: "web"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, proto string, from, to int, cidr, group string) {
		r := api.SecurityGroupRule{Protocol: proto, FromPort: from, ToPort: to, CIDR: cidr, Group: group}
		fx.db.View(func(tx store.Tx) error {
			n, err := normalizeRule(tx, r, g)
			if err != nil {
				return nil
			}
			again, err := normalizeRule(tx, n, g)
			if err != nil || again != n {
				t.Fatalf("%+v normalised to %+v, then to %+v (%v)", r, n, again, err)
			}
			switch n.Protocol {
			case api.ProtocolTCP, api.ProtocolUDP:
				if n.FromPort < 0 || n.ToPort > 65535 || n.FromPort > n.ToPort {
					t.Fatalf("ports %+v", n)
				}
			case api.ProtocolICMP:
				if n.FromPort < -1 || n.FromPort > 255 || n.ToPort < -1 || n.ToPort > 255 {
					t.Fatalf("icmp %+v", n)
				}
			case api.ProtocolAll:
				if n.FromPort != api.AnyPort || n.ToPort != api.AnyPort {
					t.Fatalf("all %+v", n)
				}
			default:
				t.Fatalf("protocol %+v", n)
			}
			if (n.CIDR == "") == (n.Group == "") {
				t.Fatalf("peer %+v", n)
			}
			if n.CIDR != "" {
				if p, err := netip.ParsePrefix(n.CIDR); err != nil || !p.Addr().Is4() || p.Masked() != p {
					t.Fatalf("cidr %+v", n)
				}
			}
			if n.Group != "" && n.Group != g.ID && n.Group != v.DefaultSecurityGroup {
				t.Fatalf("group %+v", n)
			}
			return nil
		})
	})
}
