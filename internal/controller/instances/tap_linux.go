package instances

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A host gateway's tap device is made by azoted (it has CAP_NET_ADMIN;
// the card has nothing) and is persistent, so that the host's address
// and route stay while the card that serves it is restarted: each start
// of the card attaches to it again (openTap) and receives the
// descriptor, which azoted then closes.

// tapConfig is how the host sees its gateway into one VPC.
type tapConfig struct {
	name    string
	mac     net.HardwareAddr
	mtu     int
	addr    netip.Prefix // the host's address, with its subnet's length
	vpc     netip.Prefix // the whole VPC, routed through gateway
	gateway netip.Addr   // the subnet's router, which the card answers for
}

// openTap attaches to the tap device name, making it (persistent) when
// it does not exist.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		err = unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}

// makeTap makes (or finds) the tap device of c and gives the host its
// address and its route to the VPC. Doing it again changes nothing.
func makeTap(c tapConfig) error {
	f, err := openTap(c.name)
	if err != nil {
		return err
	}
	f.Close()
	link, err := netlink.LinkByName(c.name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", c.name, err)
	}
	// The VPC carries IPv4 only: the host is not to send router
	// solicitations and the like into it.
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", c.name, "disable_ipv6"), []byte("1"), 0); err != nil &&
		!errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tap %s: turning IPv6 off: %w", c.name, err)
	}
	if err := netlink.LinkSetHardwareAddr(link, c.mac); err != nil {
		return fmt.Errorf("tap %s: MAC: %w", c.name, err)
	}
	if err := netlink.LinkSetMTU(link, c.mtu); err != nil {
		return fmt.Errorf("tap %s: MTU: %w", c.name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: c.addr.Addr().AsSlice(), Mask: net.CIDRMask(c.addr.Bits(), 32)}}
	if err := netlink.AddrReplace(link, a); err != nil {
		return fmt.Errorf("tap %s: address %v: %w", c.name, c.addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tap %s: up: %w", c.name, err)
	}
	if c.vpc == c.addr.Masked() {
		return nil // the subnet is the whole VPC: its own route covers it
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: c.vpc.Addr().AsSlice(), Mask: net.CIDRMask(c.vpc.Bits(), 32)},
		Gw: c.gateway.AsSlice(), Src: c.addr.Addr().AsSlice()}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("tap %s: route to %v: %w", c.name, c.vpc, err)
	}
	return nil
}

// removeTap deletes the tap device name, and with it the host's address
// and routes in the VPC. A device that is gone already is no error.
func removeTap(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return netlink.LinkDel(link)
}
