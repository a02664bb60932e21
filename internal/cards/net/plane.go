package net

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/azote/azote/internal/cards/cardproto"
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
	if err := pl.apply(&cfg.State, keys); err != nil {
		pl.tunnel.close()
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
	if err := pl.tunnel.setKeys(st.KeyEpochs, st.NextKeyEpoch, keys); err != nil {
		return err
	}
	if err := pl.guard.set(pol, members); err != nil {
		return err // rules policyOf passed: not expected
	}
	pl.sw.SetView(v)
	pl.dhcp.set(v, uint16(pl.cfg.MTU), dns)
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
	return m
}

func (pl *plane) close() { pl.tunnel.close() }

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
