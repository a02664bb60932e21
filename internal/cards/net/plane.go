package net

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/net/imds"
	"github.com/azote/azote/internal/keymem"
)

// plane is the card's data plane as azoted configured it: the switch and
// what it consults, each updated whole when azoted pushes a new state.
type plane struct {
	cfg    cardproto.NetConfig
	sw     *Switch
	tunnel *tunnel
	guard  *guard
	dhcp   *dhcpServer
	imds   *imds.Service
	meta   *imds.Stack
}

func newPlane(cfg *cardproto.NetConfig, keys []*keymem.Buf, send func(int, netip.AddrPort, []byte) error, log *slog.Logger) (*plane, error) {
	if cfg.Pairs < 1 || cfg.Pairs > MaxPairs {
		return nil, fmt.Errorf("%d queue pairs", cfg.Pairs)
	}
	v, err := viewOf(&cfg.State)
	if err != nil {
		return nil, err
	}
	pl := &plane{cfg: *cfg, dhcp: &dhcpServer{}}
	if pl.tunnel, err = newTunnel(cfg, v); err != nil {
		return nil, err
	}
	if pl.guard, err = newGuard(cfg); err != nil {
		pl.tunnel.close()
		return nil, err
	}
	pl.sw = NewSwitch(v, pl.tunnel, pl.guard, pl.dhcp, send, log)
	if pl.imds, err = imds.NewService(v.Self.MAC.String(), cfg.InterfaceID, 0, 0); err != nil {
		pl.tunnel.close()
		return nil, err
	}
	pl.meta = imds.NewStack(pl.imds, pl.sw.toLocal)
	pl.sw.SetMetadata(pl.meta)
	if err := pl.apply(&cfg.State, keys); err != nil {
		pl.close()
		return nil, err
	}
	return pl, nil
}

// apply swaps in a new state of the VPC and its keys; nothing changes
// when any part of it is refused.
func (pl *plane) apply(st *cardproto.NetState, keys []*keymem.Buf) error {
	v, err := viewOf(st)
	if err != nil {
		return err
	}
	if v.Self.IP != pl.sw.view.Load().Self.IP || v.Self.MAC != pl.sw.view.Load().Self.MAC || v.Self.Index != pl.sw.view.Load().Self.Index {
		return fmt.Errorf("a state for another interface")
	}
	if st.VPCIndex != pl.cfg.State.VPCIndex {
		return fmt.Errorf("a state for another VPC")
	}
	if len(keys) != st.KeyCount() {
		return fmt.Errorf("%d keys for %d epochs", len(keys), st.KeyCount())
	}
	var dns []netip.Addr
	for _, s := range st.DNS {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return fmt.Errorf("DNS server %q", s)
		}
		dns = append(dns, a)
	}
	pol, members, err := policyOf(st)
	if err != nil {
		return err
	}
	var md *imds.Data
	if st.Metadata != nil {
		if md, err = imds.Compile(st.Metadata, v.Self.MAC.String(), v.Self.IP); err != nil {
			return err
		}
	}
	if err := pl.tunnel.setKeys(st.KeyEpochs, st.NextKeyEpoch, keys); err != nil {
		return err
	}
	if err := pl.guard.set(pol, members); err != nil {
		return err // rules policyOf passed: not expected
	}
	pl.sw.SetView(v)
	pl.dhcp.set(v, uint16(pl.cfg.MTU), dns)
	pl.imds.SetData(md) // nil turns the service off
	return nil
}

// metrics is what the card answers on its metrics socket: the switch's
// counters and the connection table's gauges. The filter reclaims idle
// flows lazily (when a flow needs the place); they are reclaimed here
// first, so that the gauges count the flows alive, not the ones that
// idled out since.
func (pl *plane) metrics() cardproto.NetMetrics {
	m := pl.sw.Metrics().Snapshot()
	f := pl.guard.f
	f.Expire(pl.sw.now())
	c := f.Counters()
	m.ConntrackEntries, m.ConntrackAllowance = c.Entries, c.Available
	m.Metadata = metadataMetrics(pl.imds, pl.meta)
	return m
}

func metadataMetrics(svc *imds.Service, st *imds.Stack) cardproto.NetMetadataMetrics {
	oc := svc.Counts()
	sc := st.Counts()
	return cardproto.NetMetadataMetrics{
		Requests:    oc[:],
		Unavailable: sc.Unavailable, Dropped: sc.Dropped, Refused: sc.Refused,
		Resets: sc.Resets, Retransmits: sc.Retransmits, Connections: sc.Conns,
	}
}

func (pl *plane) close() {
	pl.meta.Close()
	pl.tunnel.close()
}

// errPlaintextRefused: a configuration asked for plaintext encapsulation
// of a card not started to accept it.
var errPlaintextRefused = errors.New("the configuration asks for plaintext encapsulation, which only a card started with --allow-plaintext accepts (benchmarks and tests)")

// checkPlaintext refuses a plaintext configuration unless the card's
// command line allowed it: azoted never sets either, so a plaintext card
// takes two deliberate acts (bench/net sets both).
func checkPlaintext(cfg *cardproto.NetConfig, allow bool) error {
	if cfg.Plaintext && !allow {
		return errPlaintextRefused
	}
	return nil
}
