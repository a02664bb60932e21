package net

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/cards/net/imds"
	"github.com/azote/azote/internal/cards/net/packet"
)

// Peer is one network interface of the VPC, as this card knows it.
type Peer struct {
	Index    uint32         // the interface's number within its VPC
	IP       netip.Addr     // its private address
	MAC      packet.MAC     //
	Subnet   netip.Prefix   // the subnet it is in
	Underlay netip.AddrPort // where the card serving it listens
}

// View is what the card knows of its VPC at one moment; azoted sends a
// new one whenever the VPC changes, and the switch swaps it in whole.
type View struct {
	Self       Peer         // this interface (its Underlay is unused)
	Gateway    netip.Addr   // the subnet's router: the first address after the network
	GatewayMAC packet.MAC   // the router's MAC, the same on every card
	VPC        netip.Prefix // the VPC's range, routed through the gateway
	Peers      []Peer       // every other interface of the VPC

	byIP    map[netip.Addr]*Peer
	byIndex map[uint32]*Peer
}

func (v *View) index() {
	v.byIP = make(map[netip.Addr]*Peer, len(v.Peers))
	v.byIndex = make(map[uint32]*Peer, len(v.Peers))
	for i := range v.Peers {
		p := &v.Peers[i]
		v.byIP[p.IP] = p
		v.byIndex[p.Index] = p
	}
}

// Tunnel carries frames between cards over the underlay (encap).
type Tunnel interface {
	// Seal appends to dst the datagram carrying frame from this
	// interface to peer; q is the sending queue pair.
	Seal(q int, dst []byte, to *Peer, frame []byte) ([]byte, error)
	// Open checks a datagram from the underlay and returns the sending
	// interface's index and the frame, in place. Its error says why a
	// datagram was refused (Reason).
	Open(q int, pkt []byte) (from uint32, frame []byte, err error)
	// Reason maps an error of Open to the drop it counts as.
	Reason(err error) Drop
}

// Guard is the interface's security groups and limits (filter).
type Guard interface {
	// Egress judges a frame the guest sends, Ingress one for it; p is
	// the parsed frame, now monotonic nanoseconds. They return DropNone
	// to let it pass.
	Egress(p *packet.Packet, frame []byte, now int64) Drop
	Ingress(p *packet.Packet, frame []byte, now int64) Drop
}

// DHCP answers the guest's DHCP requests (dhcp): reply returns the whole
// frame to give the guest, or nil.
type DHCP interface {
	Reply(req *packet.Packet, frame []byte, out []byte) []byte
}

// Metadata answers the guest's requests to the metadata address
// (imds.Stack).
type Metadata interface {
	// Serves reports whether there is metadata to answer with: ARP for
	// the address is answered only then.
	Serves() bool
	// FromGuest takes a frame for the address, from the guest's own
	// MAC and IP to the gateway's MAC; its answers go to the guest.
	FromGuest(p *packet.Packet, frame []byte)
}

// Switch decides, for every frame, where it goes: answered here (ARP,
// DHCP, the metadata service), sealed to a peer's card, delivered to the guest, or dropped and
// counted.
type Switch struct {
	view   atomic.Pointer[View]
	tunnel Tunnel
	guard  Guard
	dhcp   DHCP
	meta   Metadata // nil: the metadata address is not routed
	send   func(q int, to netip.AddrPort, pkt []byte) error
	log    *slog.Logger
	m      Metrics
	start  time.Time

	// local holds frames for the guest made here (ARP and DHCP answers),
	// taken by whichever receive loop wakes first (wake).
	lmu   sync.Mutex
	local [][]byte
	wake  func()
}

// maxLocal bounds the answers waiting for a receive buffer: a guest that
// floods ARP requests and posts no buffers loses answers, not memory.
const maxLocal = 64

// NewSwitch makes a switch; send writes a datagram to the underlay.
func NewSwitch(v *View, t Tunnel, g Guard, d DHCP, send func(q int, to netip.AddrPort, pkt []byte) error, log *slog.Logger) *Switch {
	s := &Switch{tunnel: t, guard: g, dhcp: d, send: send, log: log, start: time.Now(), wake: func() {}}
	s.SetView(v)
	return s
}

// SetView swaps in what azoted sent last.
func (s *Switch) SetView(v *View) {
	v.index()
	s.view.Store(v)
}

// SetMetadata gives the switch its metadata service, before the first
// frame.
func (s *Switch) SetMetadata(m Metadata) { s.meta = m }

// Metrics returns the switch's counters.
func (s *Switch) Metrics() *Metrics { return &s.m }

func (s *Switch) now() int64 { return int64(time.Since(s.start)) }

// fromGuest handles one whole frame the guest sent on queue pair q. out
// is the queue's buffer for the sealed datagram.
func (s *Switch) fromGuest(q int, p *packet.Packet, frame []byte, out *[]byte) {
	v := s.view.Load()
	m := &s.m
	m.txFrames.Add(1)
	m.txBytes.Add(uint64(len(frame)))
	if err := packet.Parse(frame, p); err != nil {
		m.drop(dropMalformedFrame)
		return
	}
	if p.Src != v.Self.MAC {
		m.drop(DropSpoof)
		return
	}
	switch p.Kind {
	case packet.KindARP:
		s.arp(v, p, frame)
		return
	case packet.KindIPv4:
	case packet.KindIPv6:
		m.drop(dropIPv6)
		return
	default:
		m.drop(dropUnsupported)
		return
	}
	if p.Proto == packet.ProtoUDP && p.HasTransport && p.SrcPort == 68 && p.DstPort == 67 {
		// DHCP: the only thing the guest may send before it has its
		// address, and only to the card.
		if s.dhcp != nil {
			if r := s.dhcp.Reply(p, frame, nil); r != nil {
				s.toLocal(r)
			}
		}
		return
	}
	if p.SrcIP != v.Self.IP {
		m.drop(DropSpoof)
		return
	}
	if p.DstIP == imds.Addr {
		// Answered here, as EC2's is by the Nitro card: never sealed,
		// and no security group applies to it. The guest reaches it
		// through its router (the default route, or an on-link route
		// whose ARP the card answers with the router's MAC).
		if s.meta == nil || p.Dst != v.GatewayMAC {
			m.drop(dropNoRoute)
			return
		}
		s.meta.FromGuest(p, frame)
		return
	}
	to, ok := v.byIP[p.DstIP]
	if !ok {
		m.drop(dropNoRoute)
		return
	}
	routed := to.Subnet != v.Self.Subnet
	switch {
	case routed && p.Dst != v.GatewayMAC:
		// Another subnet is reached through the router only.
		m.drop(dropNoRoute)
		return
	case !routed && p.Dst != to.MAC && p.Dst != v.GatewayMAC:
		m.drop(dropNoRoute)
		return
	}
	if r := s.guard.Egress(p, frame, s.now()); r != DropNone {
		m.drop(r)
		return
	}
	if routed {
		if p.TTL <= 1 {
			m.drop(dropTTL)
			return
		}
		packet.DecTTL(frame, p)
		packet.SetEthernet(frame, to.MAC, v.GatewayMAC)
	} else if p.Dst != to.MAC {
		packet.SetEthernet(frame, to.MAC, v.Self.MAC)
	}
	pkt, err := s.tunnel.Seal(q, (*out)[:0], to, frame)
	if err != nil {
		m.drop(dropSeal)
		return
	}
	*out = pkt
	if err := s.send(q, to.Underlay, pkt); err != nil {
		m.drop(dropUnderlay)
		return
	}
	m.sentFrames.Add(1)
}

// arp answers the guest's requests for the gateway and for the addresses
// of its own subnet that an interface holds; nothing else leaves the card
// and no broadcast reaches another guest.
func (s *Switch) arp(v *View, p *packet.Packet, frame []byte) {
	a := &p.ARP
	if a.Op != packet.ARPRequest || a.SenderMAC != v.Self.MAC ||
		(a.SenderIP != v.Self.IP && a.SenderIP.IsValid() && !a.SenderIP.IsUnspecified()) {
		s.m.drop(DropSpoof)
		return
	}
	var mac packet.MAC
	switch to, ok := v.byIP[a.TargetIP]; {
	case a.TargetIP == v.Gateway:
		mac = v.GatewayMAC
	case a.TargetIP == imds.Addr && s.meta != nil && s.meta.Serves():
		mac = v.GatewayMAC
	case ok && to.Subnet == v.Self.Subnet:
		mac = to.MAC
	default:
		s.m.arpUnanswered.Add(1)
		return
	}
	s.toLocal(packet.AppendARPReply(make([]byte, 0, 64), p, mac))
	s.m.arpAnswered.Add(1)
}

func (s *Switch) toLocal(frame []byte) {
	s.lmu.Lock()
	if len(s.local) >= maxLocal {
		s.lmu.Unlock()
		s.m.drop(dropNoBuffer)
		return
	}
	s.local = append(s.local, frame)
	s.lmu.Unlock()
	s.wake()
}

// takeLocal returns the frames waiting for the guest.
func (s *Switch) takeLocal(into [][]byte) [][]byte {
	s.lmu.Lock()
	into = append(into, s.local...)
	clear(s.local)
	s.local = s.local[:0]
	s.lmu.Unlock()
	return into
}

// fromUnderlay checks a datagram from the underlay and returns the frame
// to give the guest, or nil when it is dropped (and counted).
func (s *Switch) fromUnderlay(q int, p *packet.Packet, pkt []byte) []byte {
	m := &s.m
	from, frame, err := s.tunnel.Open(q, pkt)
	if err != nil {
		m.drop(s.tunnel.Reason(err))
		return nil
	}
	v := s.view.Load()
	src, ok := v.byIndex[from]
	if !ok {
		m.drop(dropUnknownPeer)
		return nil
	}
	if err := packet.Parse(frame, p); err != nil || p.Kind != packet.KindIPv4 {
		m.drop(dropMalformedFrame)
		return nil
	}
	// A card may send only for its own interface: its source address is
	// the one its index holds, and the frame is for this guest.
	if p.SrcIP != src.IP || p.DstIP != v.Self.IP || p.Dst != v.Self.MAC {
		m.drop(DropSpoof)
		return nil
	}
	if r := s.guard.Ingress(p, frame, s.now()); r != DropNone {
		m.drop(r)
		return nil
	}
	return frame
}
