package instances

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/durable"
	"github.com/azote/azote/internal/keymem"
)

// The host gateway gives this host an address in a VPC (vpcs: its
// interface, of type host_gateway). azoted serves it as it serves an
// instance's interface, with a net card of its own, but the card's guest
// side is a tap device azoted makes (tapConfig) instead of a vhost-user
// socket: the host's own kernel sends and receives through the card, so
// its traffic is switched, filtered by the VPC's default security group,
// encapsulated and encrypted like any instance's. Nothing of the VPC is
// bridged or routed by the host's network stack beyond that one device.
//
// The gateways follow the records: after every change of a VPC, and at
// start-up, reconcileGateways makes the missing ones (the interface,
// the tap, the card) and removes those whose VPC no longer wants them.
// Their cards keep running while azoted is down and are adopted again
// (the handle is kept in GatewayDir), like an instance's.

// hostGW is this host's gateway into one VPC.
type hostGW struct {
	vpcID string
	iface vpcs.InterfaceRecord
	tap   string
	nc    *netCard
	stop  chan struct{}

	mu       sync.Mutex
	stopping bool
}

func (g *hostGW) isStopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopping
}

// gateways is the host gateways azoted runs, by VPC.
type gateways struct {
	mu    sync.Mutex
	byVPC map[string]*hostGW
	kick  chan struct{}
	done  chan struct{}
}

// gwRecord is what is kept of a gateway's card to adopt it after a
// restart of azoted.
type gwRecord struct {
	VPCID     string          `json:"vpc_id"`
	Interface string          `json:"interface_id"`
	Tap       string          `json:"tap"`
	Handle    cardhost.Handle `json:"handle"`
}

// tapName names the tap device of a VPC's gateway: "azg" and the start
// of the VPC's id, within the 15 bytes Linux allows.
func tapName(vpcID string) string {
	h := strings.TrimPrefix(vpcID, api.VPCIDPrefix)
	return "azg" + h[:min(12, len(h))]
}

func (s *Service) gatewayDir() string {
	if s.cfg.GatewayDir != "" {
		return s.cfg.GatewayDir
	}
	return filepath.Join(filepath.Dir(s.cfg.Dir), "gateways")
}

func (s *Service) gatewayPath(ifaceID, what string) string {
	return filepath.Join(s.gatewayDir(), ifaceID+"."+what)
}

// StartGateways adopts the gateway cards a previous azoted left running
// and from then on keeps this host's gateways as the records say. It
// runs once, after Repair.
func (s *Service) StartGateways() {
	if s.vpcs == nil {
		return
	}
	if err := os.MkdirAll(s.gatewayDir(), 0o700); err != nil {
		s.log.Error("host gateways", "err", err)
		return
	}
	ents, _ := os.ReadDir(s.gatewayDir())
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".card") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.gatewayDir(), e.Name()))
		var r gwRecord
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			s.log.Warn("a host gateway's record cannot be read; removing it", "file", e.Name(), "err", err)
			os.Remove(filepath.Join(s.gatewayDir(), e.Name()))
			continue
		}
		n, err := s.vpcs.ResolveInterface(r.Interface)
		if err != nil {
			// The interface is gone (its VPC's gateway was turned off
			// while azoted was down): kill whatever serves it.
			n = vpcs.InterfaceRecord{NetworkInterface: api.NetworkInterface{ID: r.Interface, VPCID: r.VPCID}}
		}
		g := s.newGateway(n)
		g.nc.card = s.cards.AdoptNet(s.gatewaySpec(g), r.Handle, true)
		s.gw.byVPC[r.VPCID] = g
		s.superviseGateway(g)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.catchUp(g.nc) // given is unknown: always pushes
		}()
	}
	s.wg.Add(1)
	go s.runGateways()
	s.kickGateways()
}

// kickGateways asks for a reconciliation; it never blocks.
func (s *Service) kickGateways() {
	select {
	case s.gw.kick <- struct{}{}:
	default:
	}
}

func (s *Service) runGateways() {
	defer s.wg.Done()
	for {
		select {
		case <-s.gw.done:
			return
		case <-s.gw.kick:
			s.reconcileGateways()
		}
	}
}

// reconcileGateways makes this host's gateways what the records say.
func (s *Service) reconcileGateways() {
	want := map[string]vpcs.InterfaceRecord{}
	ids, err := s.vpcs.HostGatewayVPCs()
	if err != nil {
		s.log.Warn("host gateways: reading the VPCs", "err", err)
		return
	}
	for _, id := range ids {
		n, ok, err := s.vpcs.HostGateway(id)
		if err != nil {
			s.log.Warn("host gateway: making its interface", "vpc", id, "err", err)
			continue
		}
		if ok {
			want[id] = n
		}
	}
	s.gw.mu.Lock()
	defer s.gw.mu.Unlock()
	for id, g := range s.gw.byVPC {
		if n, ok := want[id]; !ok || n.ID != g.iface.ID {
			s.stopGateway(g)
			delete(s.gw.byVPC, id)
		}
	}
	for id, n := range want {
		if _, ok := s.gw.byVPC[id]; ok {
			continue
		}
		g, err := s.startGateway(n)
		if err != nil {
			s.log.Error("host gateway could not start", "vpc", id, "interface", n.ID, "err", err)
			continue
		}
		s.gw.byVPC[id] = g
	}
}

func (s *Service) newGateway(n vpcs.InterfaceRecord) *hostGW {
	return &hostGW{vpcID: n.VPCID, iface: n, tap: tapName(n.VPCID), stop: make(chan struct{}),
		// Pushes reach it only once it is in gateways, started.
		nc: &netCard{ifaceID: n.ID, vpcID: n.VPCID, control: s.gatewayPath(n.ID, "control.sock"), started: true}}
}

// startGateway makes the tap of interface n and starts the card serving
// it.
func (s *Service) startGateway(n vpcs.InterfaceRecord) (*hostGW, error) {
	g := s.newGateway(n)
	tc, err := s.tapConfig(n)
	if err != nil {
		return nil, err
	}
	if err := makeTap(tc); err != nil {
		removeTap(tc.name)
		return nil, err
	}
	if _, err := s.underlayOf(g.nc); err != nil {
		removeTap(tc.name)
		return nil, err
	}
	card, err := s.cards.StartNet(s.gatewaySpec(g))
	if err != nil {
		s.dropUnderlay(g.nc)
		removeTap(tc.name)
		return nil, err
	}
	g.nc.card = card
	s.recordGateway(g)
	s.superviseGateway(g)
	s.catchUp(g.nc)
	s.log.Info("host gateway up", "vpc", n.VPCID, "interface", n.ID, "tap", g.tap, "ip", n.PrivateIP)
	return g, nil
}

// stopGateway stops g's card and removes its tap.
func (s *Service) stopGateway(g *hostGW) {
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
	close(g.stop)
	s.cards.Stop([]*cardhost.Card{g.nc.card})
	if g.iface.Type == api.InterfaceTypeHostGateway {
		s.dropUnderlay(g.nc)
	} else if g.nc.underlay != nil {
		g.nc.underlay.Close() // its record is gone already
	}
	if err := removeTap(g.tap); err != nil {
		s.log.Warn("removing a host gateway's tap", "tap", g.tap, "err", err)
	}
	os.Remove(s.gatewayPath(g.iface.ID, "card"))
	s.log.Info("host gateway down", "vpc", g.vpcID, "interface", g.iface.ID, "tap", g.tap)
}

func (s *Service) superviseGateway(g *hostGW) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		stop := make(chan struct{})
		go func() {
			select {
			case <-g.stop:
			case <-s.gw.done:
			}
			close(stop)
		}()
		s.cards.Supervise(g.nc.card, stop, g.isStopping, func() { s.recordGateway(g) })
	}()
}

func (s *Service) recordGateway(g *hostGW) {
	b, _ := json.Marshal(gwRecord{VPCID: g.vpcID, Interface: g.iface.ID, Tap: g.tap, Handle: g.nc.card.Handle()})
	if err := durable.WriteFile(s.gatewayPath(g.iface.ID, "card"), b, 0o600); err != nil {
		s.log.Warn("recording a host gateway's card", "interface", g.iface.ID, "err", err)
	}
}

// tapConfig is how the host is to see interface n.
func (s *Service) tapConfig(n vpcs.InterfaceRecord) (tapConfig, error) {
	m, err := s.vpcs.Mapping(n.VPCID)
	if err != nil {
		return tapConfig{}, err
	}
	c := tapConfig{name: tapName(n.VPCID), mtu: s.guestMTU(), vpc: m.CIDR}
	for _, sn := range m.Subnets {
		if sn.ID == n.SubnetID {
			ip, err := netip.ParseAddr(n.PrivateIP)
			if err != nil {
				return c, err
			}
			c.addr, c.gateway = netip.PrefixFrom(ip, sn.Prefix.Bits()), sn.Gateway
		}
	}
	if !c.addr.IsValid() {
		return c, fmt.Errorf("the subnet %s of interface %s is gone", n.SubnetID, n.ID)
	}
	if c.mac, err = net.ParseMAC(n.MAC); err != nil {
		return c, err
	}
	return c, nil
}

func (s *Service) gatewaySpec(g *hostGW) cardhost.Net {
	return cardhost.Net{
		Config: cardproto.NetConfig{InterfaceID: g.iface.ID, VPCID: g.vpcID, MAC: g.iface.MAC, Pairs: 1, MTU: s.guestMTU()},
		// As for an instance's card (netSpec): every key, recorded as held.
		State: func() (cardproto.NetState, []*keymem.Buf, error) {
			st, keys, err := s.netState(g.iface.ID)
			if err == nil {
				s.keyAccepted(g.iface.ID, &st)
				g.nc.mu.Lock()
				g.nc.given = [2]uint32{st.KeyEpochs[0], st.NextKeyEpoch}
				g.nc.mu.Unlock()
			}
			return st, keys, err
		},
		Underlay: func() (*os.File, error) {
			if g.isStopping() {
				return nil, errors.New("the host gateway is being removed")
			}
			return s.underlayOf(g.nc)
		},
		Tap:           func() (*os.File, error) { return openTap(g.tap) },
		MetricsSocket: s.gatewayPath(g.iface.ID, "metrics.sock"),
		ControlSocket: g.nc.control,
		OpenLog: func() (*os.File, error) {
			return os.OpenFile(s.gatewayPath(g.iface.ID, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		},
		LogRoom: cardLogRoom(s.cfg.LogLimit),
	}
}

// gatewayCards returns the gateway cards of VPC vpcID, for pushVPC.
func (s *Service) gatewayCards(vpcID string) []*netCard {
	s.gw.mu.Lock()
	defer s.gw.mu.Unlock()
	if g, ok := s.gw.byVPC[vpcID]; ok && !g.isStopping() {
		return []*netCard{g.nc}
	}
	return nil
}
