package instances

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/keymem"
)

// A net card serves one network interface of a running instance. azoted
// binds its underlay socket (a UDP port on the host's underlay address)
// and keeps it while the instance runs, so a card that dies and is
// restarted receives where its peers send; the address is recorded for
// the VPC's cards on every host (vpcs.SetUnderlay), and every change of
// the VPC is pushed to each of its cards here.

// GatewayMAC is the MAC of every subnet's router, as the cards answer ARP
// for it: locally administered, the same on every host.
const GatewayMAC = "02:a2:07:e0:00:01"

// netCard is what azoted holds of one running net card.
type netCard struct {
	ifaceID, vpcID string
	underlay       *os.File
	control        string

	mu   sync.Mutex // guards underlay
	card *cardhost.Card

	pushMu sync.Mutex // serialises pushes; guards started and stale
	// started is set once the card runs and takes pushes; stale, when a
	// change came while it was starting, after the state it started
	// with was read: it is pushed as soon as it runs.
	started, stale bool
}

func (s *Service) netSocket(instID, ifaceID string) string {
	return filepath.Join(s.instanceDir(instID), ifaceID+".sock")
}

func (s *Service) netPath(instID, ifaceID, what string) string {
	return filepath.Join(s.instanceDir(instID), ifaceID+"."+what+".sock")
}

// guestMTU is what the guest may send: the underlay's MTU less the
// encapsulation and the inner Ethernet header.
func (s *Service) guestMTU() int {
	mtu := s.cfg.UnderlayMTU
	if mtu == 0 {
		mtu = DefaultUnderlayMTU
	}
	return mtu - 14 - tunnelOverhead
}

// tunnelOverhead mirrors the card's encapsulation (its header and tag,
// UDP and IPv4); azoted does not link the card.
const tunnelOverhead = 36 + 16 + 8 + 20

// DefaultUnderlayMTU is the underlay's MTU when the configuration gives
// none.
const DefaultUnderlayMTU = 1500

// bindUnderlay binds a UDP socket on the host's underlay address.
func (s *Service) bindUnderlay() (*os.File, netip.AddrPort, error) {
	ip := s.cfg.UnderlayIP
	if !ip.IsValid() {
		ip = netip.MustParseAddr("127.0.0.1")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	// Room for bursts while a receive loop waits for the guest.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ip.As4()}); err != nil {
		unix.Close(fd)
		return nil, netip.AddrPort{}, fmt.Errorf("binding the underlay on %v: %w", ip, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, netip.AddrPort{}, err
	}
	return os.NewFile(uintptr(fd), "underlay"), netip.AddrPortFrom(ip, uint16(sa.(*unix.SockaddrInet4).Port)), nil
}

// netState is what the card of interface n is told of its VPC now, and
// the VPC's keys, newest first, in locked memory the caller frees.
func (s *Service) netState(ifaceID string) (cardproto.NetState, []*keymem.Buf, error) {
	var st cardproto.NetState
	n, err := s.vpcs.ResolveInterface(ifaceID)
	if err != nil {
		return st, nil, err
	}
	m, err := s.vpcs.Mapping(n.VPCID)
	if err != nil {
		return st, nil, err
	}
	rules, err := s.vpcs.EffectiveRules(ifaceID)
	if err != nil {
		return st, nil, err
	}
	subnets := map[string]netip.Prefix{}
	var gateway netip.Addr
	for _, sn := range m.Subnets {
		subnets[sn.ID] = sn.Prefix
		if sn.ID == n.SubnetID {
			gateway = sn.Gateway
		}
	}
	st = cardproto.NetState{VPCIndex: m.NumericID, VPCCIDR: m.CIDR.String(), Gateway: gateway.String(), GatewayMAC: GatewayMAC}
	for _, e := range m.Endpoints {
		p := cardproto.NetPeer{Index: e.NumericID, IP: e.IP.String(), MAC: e.MAC.String(),
			Subnet: subnets[e.SubnetID].String(), Groups: e.Groups}
		if e.InterfaceID == ifaceID {
			st.Self = p
			continue
		}
		if !e.Underlay.IsValid() {
			continue // no card serves it now: nothing to send to
		}
		p.Underlay = e.Underlay.String()
		st.Peers = append(st.Peers, p)
	}
	for _, r := range rules.Ingress {
		st.Ingress = append(st.Ingress, netRule(r))
	}
	for _, r := range rules.Egress {
		st.Egress = append(st.Egress, netRule(r))
	}
	ks, err := s.vpcs.Keys(n.VPCID)
	if err != nil {
		return st, nil, err
	}
	// Newest first: the one to seal with, then the one still accepted.
	slices.SortFunc(ks, func(a, b vpcs.EpochKey) int { return int(b.Epoch) - int(a.Epoch) })
	if len(ks) > cardproto.MaxNetKeys {
		vpcs.FreeKeys(ks[cardproto.MaxNetKeys:])
		ks = ks[:cardproto.MaxNetKeys]
	}
	keys := make([]*keymem.Buf, len(ks))
	for i, k := range ks {
		st.KeyEpochs = append(st.KeyEpochs, k.Epoch)
		keys[i] = k.Key
	}
	return st, keys, nil
}

func netRule(r vpcs.Rule) cardproto.NetRule {
	out := cardproto.NetRule{Protocol: r.Protocol, FromPort: r.FromPort, ToPort: r.ToPort, Group: r.Group}
	if r.Prefix.IsValid() {
		out.CIDR = r.Prefix.String()
	}
	return out
}

// startNetCards starts the card of each interface of rec and returns the
// devices the engine attaches. On error the caller stops every card.
func (s *Service) startNetCards(rt *instanceRuntime, rec instanceRecord, set *cardSet) ([]engine.Device, error) {
	if s.vpcs == nil || len(rec.NetworkInterfaces) == 0 {
		return nil, nil
	}
	var devices []engine.Device
	for _, ni := range rec.NetworkInterfaces {
		// Known to pushVPC before its state is read: a change from then
		// on marks it stale rather than being lost (another host's, or
		// the recording of another card's underlay, can come any time).
		nc := &netCard{ifaceID: ni.ID, vpcID: ni.VPCID, control: s.netPath(rec.ID, ni.ID, "control")}
		set.mu.Lock()
		set.nets = append(set.nets, nc)
		set.mu.Unlock()
		if err := s.startNetCard(rt, rec, ni, nc); err != nil {
			return nil, err
		}
		set.mu.Lock()
		set.cards[ni.ID] = nc.card
		set.mu.Unlock()
		s.superviseCard(rt, set, nc.card)
		nc.pushMu.Lock()
		nc.started = true
		stale := nc.stale
		nc.stale = false
		nc.pushMu.Unlock()
		if stale {
			s.pushNet(nc)
		}
		devices = append(devices, engine.Device{Kind: engine.DeviceNet, ID: ni.ID, Socket: s.netSocket(rec.ID, ni.ID),
			Queues: rec.VCPUs, MAC: ni.MAC})
	}
	return devices, nil
}

func (s *Service) startNetCard(rt *instanceRuntime, rec instanceRecord, ni api.InstanceNetworkInterface, nc *netCard) error {
	if _, err := s.underlayOf(nc); err != nil {
		return err
	}
	card, err := s.cards.StartNet(s.netSpec(rt, rec, ni, nc))
	if err != nil {
		s.dropUnderlay(nc)
		s.log.Error("card failure", "instance", rec.ID, "interface", ni.ID, "err", err)
		return fmt.Errorf("the card of network interface %s could not start; azoted's log on the host has the details: %w", ni.ID, ErrEngine)
	}
	nc.card = card
	return nil
}

// underlayOf returns nc's underlay socket, binding (and recording) one
// the first time, or after an azoted restart, which does not inherit the
// socket of the card it adopted: the card restarted then listens on a
// new port, which its peers learn.
func (s *Service) underlayOf(nc *netCard) (*os.File, error) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.underlay != nil {
		return nc.underlay, nil
	}
	u, addr, err := s.bindUnderlay()
	if err != nil {
		return nil, err
	}
	if err := s.vpcs.SetUnderlay(nc.ifaceID, addr); err != nil {
		u.Close()
		return nil, err
	}
	nc.underlay = u
	return u, nil
}

// dropUnderlay forgets where nc listened and closes its socket.
func (s *Service) dropUnderlay(nc *netCard) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if err := s.vpcs.SetUnderlay(nc.ifaceID, netip.AddrPort{}); err != nil {
		s.log.Warn("forgetting an interface's underlay", "interface", nc.ifaceID, "err", err)
	}
	if nc.underlay != nil {
		nc.underlay.Close()
		nc.underlay = nil
	}
}

func (s *Service) netSpec(rt *instanceRuntime, rec instanceRecord, ni api.InstanceNetworkInterface, nc *netCard) cardhost.Net {
	rt.mu.Lock()
	engineGID := rt.engineUID
	rt.mu.Unlock()
	return cardhost.Net{
		Config: cardproto.NetConfig{InterfaceID: ni.ID, VPCID: ni.VPCID, MAC: ni.MAC, Pairs: max(1, min(rec.VCPUs, 16)),
			MTU: s.guestMTU()},
		State:    func() (cardproto.NetState, []*keymem.Buf, error) { return s.netState(ni.ID) },
		Underlay: func() (*os.File, error) { return s.underlayOf(nc) },
		Socket:   s.netSocket(rec.ID, ni.ID), EngineGID: engineGID,
		MetricsSocket: s.netPath(rec.ID, ni.ID, "metrics"),
		ControlSocket: s.netPath(rec.ID, ni.ID, "control"),
		OpenLog:       func() (*os.File, error) { return s.openCardLog(rec.ID, ni.ID) },
		LogRoom:       cardLogRoom(s.cfg.LogLimit),
	}
}

// stopNetCards forgets where the stopped cards of set listened and
// closes their sockets; the processes were stopped with the others.
func (s *Service) stopNetCards(set *cardSet) {
	for _, nc := range set.nets {
		s.dropUnderlay(nc)
	}
	set.nets = nil
}

// adoptNetCards re-attaches to the net cards a previous azoted started.
func (s *Service) adoptNetCards(rt *instanceRuntime, rec instanceRecord, set *cardSet) {
	if s.vpcs == nil {
		return
	}
	for _, ni := range rec.NetworkInterfaces {
		h, ok := rec.Cards[ni.ID]
		nc := &netCard{ifaceID: ni.ID, vpcID: ni.VPCID, control: s.netPath(rec.ID, ni.ID, "control"), started: true}
		nc.card = s.cards.AdoptNet(s.netSpec(rt, rec, ni, nc), h, ok)
		set.cards[ni.ID] = nc.card
		set.nets = append(set.nets, nc)
		s.superviseCard(rt, set, nc.card)
	}
}

// pushVPC sends the new state of VPC vpcID to each of its cards that
// runs here. A card that refuses it, or cannot be reached, keeps its
// state; it gets the whole state again at the next change or restart.
func (s *Service) pushVPC(vpcID string) {
	s.mu.Lock()
	var ncs []*netCard
	for _, rt := range s.runtimes {
		rt.mu.Lock()
		if set := rt.cards; set != nil {
			set.mu.Lock()
			for _, nc := range set.nets {
				if nc.vpcID == vpcID {
					ncs = append(ncs, nc)
				}
			}
			set.mu.Unlock()
		}
		rt.mu.Unlock()
	}
	s.mu.Unlock()
	for _, nc := range ncs {
		s.pushNet(nc)
	}
}

// pushNet sends nc its VPC's state now, or marks it stale while it is
// still starting.
func (s *Service) pushNet(nc *netCard) {
	nc.pushMu.Lock()
	if !nc.started {
		nc.stale = true
		nc.pushMu.Unlock()
		return
	}
	st, keys, err := s.netState(nc.ifaceID)
	if err == nil {
		err = cardhost.PushNet(nc.control, st, keys)
		for _, k := range keys {
			k.Free()
		}
	}
	nc.pushMu.Unlock()
	if err != nil {
		s.log.Warn("pushing a VPC's state to a card", "vpc", nc.vpcID, "interface", nc.ifaceID, "err", err)
	}
}
