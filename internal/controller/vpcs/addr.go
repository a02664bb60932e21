package vpcs

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/azote/azote/internal/controller/refusal"
)

// Address rules, as EC2's: VPC and subnet blocks are IPv4 /16 to /28,
// given as their network address. In a subnet the network address, the
// three after it (router, DNS, reserved) and the broadcast address are
// never given to an interface.
const (
	MinPrefixBits = 16
	MaxPrefixBits = 28
	// reservedLow is how many addresses at the start of a subnet are
	// reserved; one more is at its end.
	reservedLow = 4
)

// forbidden are blocks no VPC may overlap: their addresses mean
// something else on every host (this network, loopback, link-local with
// the metadata service, multicast and the reserved rest).
var forbidden = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/3"),
}

// parseBlock reads a VPC or subnet block: IPv4, /16 to /28, its own
// network address.
func parseBlock(kind, s string, bad error) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return p, refusal.New(bad, "%s CIDR %q is not an IPv4 block such as 10.0.0.0/16", kind, s)
	case !p.Addr().Is4():
		return p, refusal.New(bad, "%s CIDR %q: only IPv4 blocks are supported", kind, s)
	case p.Bits() < MinPrefixBits || p.Bits() > MaxPrefixBits:
		return p, refusal.New(bad, "%s CIDR %q: the prefix must be from /%d to /%d", kind, s, MinPrefixBits, MaxPrefixBits)
	case p.Masked() != p:
		return p, refusal.New(bad, "%s CIDR %q has host bits set: did you mean %s?", kind, s, p.Masked())
	}
	return p, nil
}

// parseRuleCIDR reads the CIDR of a security group rule: any IPv4 block,
// its own network address.
func parseRuleCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return p, refusal.New(refusal.ErrInvalidParameter, "rule CIDR %q is not an IPv4 block such as 0.0.0.0/0", s)
	case !p.Addr().Is4():
		return p, refusal.New(refusal.ErrInvalidParameter, "rule CIDR %q: only IPv4 blocks are supported", s)
	case p.Masked() != p:
		return p, refusal.New(refusal.ErrInvalidParameter, "rule CIDR %q has host bits set: did you mean %s?", s, p.Masked())
	}
	return p, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

// size is the number of addresses of p.
func size(p netip.Prefix) uint32 { return 1 << (32 - p.Bits()) }

// Gateway is the router address of subnet p: the first after its
// network address.
func Gateway(p netip.Prefix) netip.Addr { return addr(u32(p.Addr()) + 1) }

// usable is the range of addresses of p an interface may have.
func usable(p netip.Prefix) (first, last uint32) {
	base := u32(p.Addr())
	return base + reservedLow, base + size(p) - 2
}

// Usable is how many addresses of subnet p interfaces may have.
func Usable(p netip.Prefix) int {
	first, last := usable(p)
	return int(last - first + 1)
}

// checkRequested checks an address asked for in subnet p.
func checkRequested(s string, p netip.Prefix) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return a, refusal.New(ErrInvalidIPAddress, "%q is not an IPv4 address", s)
	}
	if !p.Contains(a) {
		return a, refusal.New(ErrAddressNotInSubnet, "%s is not in the subnet's block %s", a, p)
	}
	if first, last := usable(p); u32(a) < first || u32(a) > last {
		return a, refusal.New(ErrInvalidIPAddress, "%s is reserved in %s: the first four addresses (network, router, DNS, reserved) and the last (broadcast) are never given to interfaces; use %s to %s", a, p, addr(first), addr(last))
	}
	return a, nil
}

// lowestFree is the lowest usable address of p not in used.
func lowestFree(p netip.Prefix, used map[netip.Addr]bool) (netip.Addr, bool) {
	first, last := usable(p)
	for n := first; n <= last; n++ {
		if a := addr(n); !used[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// randomMAC is a locally administered unicast MAC (02:xx:xx:xx:xx:xx),
// as EC2 gives its interfaces.
func randomMAC() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[1:]); err != nil {
		return "", err
	}
	b[0] = 0x02
	return net.HardwareAddr(b[:]).String(), nil
}

// randomUint32 is a random non-zero number.
func randomUint32() (uint32, error) {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if n := binary.BigEndian.Uint32(b[:]); n != 0 {
			return n, nil
		}
	}
}

func u32Key(n uint32) string { return fmt.Sprintf("%010d", n) }
