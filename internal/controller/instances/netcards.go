package instances

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

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
	control        string

	mu       sync.Mutex // guards underlay and given
	underlay *os.File
	// given are the current and next key epochs of the card's last state.
	given [2]uint32
	card  *cardhost.Card

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
// the VPC's keys in the order the state names them (current, previous,
// next), in locked memory the caller frees.
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
	if st.Metadata, err = s.metadata(ifaceID); err != nil {
		return st, nil, err
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
	// The current key first, then the previous one; a rotation's next
	// one last.
	slices.SortFunc(ks, func(a, b vpcs.EpochKey) int {
		switch {
		case a.Next != b.Next:
			return boolCmp(a.Next, b.Next)
		case a.Epoch > b.Epoch:
			return -1
		case a.Epoch < b.Epoch:
			return 1
		}
		return 0
	})
	if len(ks) > cardproto.MaxNetKeys {
		vpcs.FreeKeys(ks)
		return st, nil, fmt.Errorf("VPC %s has %d keys, more than a card takes", n.VPCID, len(ks))
	}
	keys := make([]*keymem.Buf, len(ks))
	for i, k := range ks {
		if k.Next {
			st.NextKeyEpoch = k.Epoch
		} else {
			st.KeyEpochs = append(st.KeyEpochs, k.Epoch)
		}
		keys[i] = k.Key
	}
	if len(st.KeyEpochs) == 0 {
		vpcs.FreeKeys(ks)
		return st, nil, fmt.Errorf("VPC %s has no current key", n.VPCID)
	}
	return st, keys, nil
}

func boolCmp(a, b bool) int {
	if a == b {
		return 0
	}
	if a {
		return 1
	}
	return -1
}

// heldEpoch is the newest key epoch a card that applied st holds: what
// it acknowledges for a key rotation (vpcs.KeyAccepted).
func heldEpoch(st *cardproto.NetState) uint32 {
	if st.NextKeyEpoch != 0 {
		return st.NextKeyEpoch
	}
	if len(st.KeyEpochs) == 0 {
		return 0
	}
	return st.KeyEpochs[0]
}

// keyAccepted records that the card of ifaceID holds the keys of st.
func (s *Service) keyAccepted(ifaceID string, st *cardproto.NetState) {
	if err := s.vpcs.KeyAccepted(ifaceID, heldEpoch(st)); err != nil {
		s.log.Warn("recording the keys a card holds", "interface", ifaceID, "err", err)
	}
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
		s.cardStarted(nc)
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
		// At each start the card gets every key of the VPC, a rotation's
		// next one too, and holds them before it reads its underlay
		// socket (kept across restarts): it holds them from now on.
		State: func() (cardproto.NetState, []*keymem.Buf, error) {
			st, keys, err := s.netState(ni.ID)
			if err == nil {
				s.keyAccepted(ni.ID, &st)
				nc.mu.Lock()
				nc.given = [2]uint32{st.KeyEpochs[0], st.NextKeyEpoch}
				nc.mu.Unlock()
			}
			return st, keys, err
		},
		Underlay: func() (*os.File, error) { return s.underlayOf(nc) },
		Socket:   s.netSocket(rec.ID, ni.ID), EngineGID: engineGID,
		MetricsSocket: s.netPath(rec.ID, ni.ID, "metrics"),
		ControlSocket: s.netPath(rec.ID, ni.ID, "control"),
		OpenLog:       func() (*os.File, error) { return s.openCardLog(rec.ID, ni.ID) },
		LogRoom:       cardLogRoom(s.cfg.LogLimit),
	}
}

// NetCardSocket is the metrics socket of the card serving one network
// interface of one instance.
type NetCardSocket struct {
	Instance, Interface, Socket string
}

// NetMetricsSockets lists the metrics sockets of the net cards of every
// instance with a machine, by instance and interface id, and of the
// host's gateways (no instance).
func (s *Service) NetMetricsSockets() ([]NetCardSocket, error) {
	if s.vpcs == nil {
		return nil, nil
	}
	recs, err := s.allInstances()
	if err != nil {
		return nil, err
	}
	var out []NetCardSocket
	for _, r := range recs {
		if r.Handle == nil {
			continue
		}
		for _, ni := range r.NetworkInterfaces {
			out = append(out, NetCardSocket{r.ID, ni.ID, s.netPath(r.ID, ni.ID, "metrics")})
		}
	}
	// The host's gateways, with no instance.
	s.gw.mu.Lock()
	for _, g := range s.gw.byVPC {
		out = append(out, NetCardSocket{"", g.iface.ID, s.gatewayPath(g.iface.ID, "metrics.sock")})
	}
	s.gw.mu.Unlock()
	slices.SortFunc(out, func(a, b NetCardSocket) int {
		return cmp.Or(strings.Compare(a.Interface, b.Interface), strings.Compare(a.Instance, b.Instance))
	})
	return out, nil
}

// stopNetCards forgets where the stopped cards of set listened and
// closes their sockets; the processes were stopped with the others.
func (s *Service) stopNetCards(set *cardSet) {
	for _, nc := range set.nets {
		s.dropUnderlay(nc)
	}
	set.nets = nil
}

// adoptNetCards re-attaches to the net cards a previous azoted started,
// and pushes each the state of its VPC: what changed while no azoted ran
// (a key rotation ended, say) did not reach it.
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
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.catchUp(nc) // given is unknown: always pushes
		}()
	}
}

// pushVPC sends the new state of VPC vpcID to each of its cards that
// runs here, and records which keys each then holds. A card that refuses
// it, or cannot be reached, keeps its state; it gets the whole state
// again at the next change or restart. During a key rotation, it also
// makes sure the rotation ends (watchRotation).
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
	ncs = append(ncs, s.gatewayCards(vpcID)...)
	rotating := false
	for _, nc := range ncs {
		st, err := s.pushCard(nc)
		rotating = rotating || st.NextKeyEpoch != 0
		if err != nil {
			s.log.Warn("pushing a VPC's state to a card", "vpc", vpcID, "interface", nc.ifaceID, "err", err)
		}
	}
	if rotating {
		s.watchRotation(vpcID)
	}
}

// pushCard sends nc the state of its VPC now and, once the card applied
// it, records the keys it holds: the last card of a VPC to take a
// rotation's next key so ends the rotation's first phase. It returns the
// state, pushed or not. A card still starting is marked stale instead,
// and pushed once it runs (cardStarted).
func (s *Service) pushCard(nc *netCard) (cardproto.NetState, error) {
	nc.pushMu.Lock()
	defer nc.pushMu.Unlock()
	if !nc.started {
		nc.stale = true
		return cardproto.NetState{}, nil
	}
	st, keys, err := s.netState(nc.ifaceID)
	if err != nil {
		return st, err
	}
	err = cardhost.PushNet(nc.control, st, keys)
	for _, k := range keys {
		k.Free()
	}
	if err != nil {
		return st, err
	}
	nc.mu.Lock()
	nc.given = [2]uint32{st.KeyEpochs[0], st.NextKeyEpoch}
	nc.mu.Unlock()
	s.keyAccepted(nc.ifaceID, &st)
	return st, nil
}

// cardStarted lets pushes reach nc, which now runs, and pushes it what
// changed while it started.
func (s *Service) cardStarted(nc *netCard) {
	nc.pushMu.Lock()
	nc.started = true
	stale := nc.stale
	nc.stale = false
	nc.pushMu.Unlock()
	if !stale {
		s.catchUp(nc)
		return
	}
	if _, err := s.pushCard(nc); err != nil {
		s.log.Warn("pushing a VPC's state to a card", "vpc", nc.vpcID, "interface", nc.ifaceID, "err", err)
	}
}

// catchUp pushes a card that just started (or was adopted) the state of
// its VPC if the keys changed since its state was read: a rotation that
// began in between was pushed to the cards then running, not to this
// one, and would wait for it.
func (s *Service) catchUp(nc *netCard) {
	m, err := s.vpcs.Mapping(nc.vpcID)
	if err != nil {
		return // the VPC is gone; nothing to catch up with
	}
	nc.mu.Lock()
	given := nc.given
	nc.mu.Unlock()
	if given == [2]uint32{m.KeyEpoch, m.NextKeyEpoch} {
		return
	}
	if _, err := s.pushCard(nc); err != nil {
		s.log.Warn("pushing a VPC's state to a card", "vpc", nc.vpcID, "interface", nc.ifaceID, "err", err)
	}
	if m.NextKeyEpoch != 0 {
		s.watchRotation(nc.vpcID)
	}
}

// watchRotation ends VPC vpcID's key rotation once its grace is over, in
// case some card never records that it has the next key (its host is
// down or cut off from the store): every host that runs a card of the
// VPC keeps such a timer, and the first to fire promotes (the others
// find nothing left to do).
func (s *Service) watchRotation(vpcID string) {
	wait, err := s.vpcs.PromoteDue(vpcID)
	if err != nil {
		s.log.Warn("ending a VPC's key rotation", "vpc", vpcID, "err", err)
		return
	}
	if wait == 0 {
		return
	}
	s.rotMu.Lock()
	defer s.rotMu.Unlock()
	if s.rotClosed || s.rotations[vpcID] != nil {
		return
	}
	s.rotations[vpcID] = time.AfterFunc(wait, func() {
		s.rotMu.Lock()
		delete(s.rotations, vpcID)
		closed := s.rotClosed
		if !closed {
			s.wg.Add(1)
		}
		s.rotMu.Unlock()
		if closed {
			return
		}
		defer s.wg.Done()
		s.watchRotation(vpcID)
	})
}
