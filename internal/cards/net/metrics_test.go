package net

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/net/filter"
	"github.com/azote/azote/internal/cards/net/packet"
	"github.com/azote/azote/internal/keymem"
)

// TestDropLabels: each reason the card counts is rendered by azoted under
// its own name (cardproto.NetDrops is in the order of the constants), and
// a snapshot puts each counter where azoted reads it.
func TestDropLabels(t *testing.T) {
	want := map[Drop]string{
		DropSecurityGroup: "security_group", DropConntrackFull: "conntrack_allowance_exceeded",
		DropRateLimit: "rate_limit", DropSpoof: "spoof", DropDecrypt: "decrypt", DropReplay: "replay",
		DropWrongVPC: "wrong_vpc", dropMalformedChain: "malformed_chain", dropMalformedFrame: "malformed",
		dropOversize: "oversize", dropIPv6: "ipv6", dropUnsupported: "unsupported", dropNoRoute: "no_route",
		dropTTL: "ttl", dropSeal: "seal", dropUnderlay: "underlay", dropUnknownPeer: "unknown_peer",
		dropNoBuffer: "no_buffer",
	}
	if len(want) != int(numDrops)-1 {
		t.Fatalf("the table names %d reasons, the card has %d", len(want), numDrops-1)
	}
	var m Metrics
	for r := DropSecurityGroup; r < numDrops; r++ {
		if r.String() != want[r] {
			t.Errorf("reason %d is %q, want %q", r, r, want[r])
		}
		for range int(r) {
			m.drop(r)
		}
	}
	m.txFrames.Add(3)
	b, err := json.Marshal(m.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	got, err := cardproto.ReadNetMetrics(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("azoted refuses the card's answer: %v", err)
	}
	if got.TxPackets != 3 {
		t.Errorf("tx packets %d, want 3", got.TxPackets)
	}
	for i, n := range got.Drops {
		r := Drop(i + 1)
		if cardproto.NetDrops[i] != want[r] || n != uint64(r) {
			t.Errorf("azoted reads %d drops for %s, the card counted %d for %s", n, cardproto.NetDrops[i], r, want[r])
		}
	}
}

// TestPlaneMetricsConntrack: the card's answer counts the flows in its
// connection table, and no longer those that idled out.
func TestPlaneMetricsConntrack(t *testing.T) {
	cfg := &cardproto.NetConfig{InterfaceID: "eni-a", MAC: "02:aa:00:00:00:01", Pairs: 1, MTU: 1500,
		State: cardproto.NetState{VPCIndex: 7, VPCCIDR: "10.0.0.0/16", Gateway: "10.0.1.1", GatewayMAC: "02:a2:07:e0:00:01",
			Self:   cardproto.NetPeer{Index: 1, IP: "10.0.1.10", MAC: "02:aa:00:00:00:01", Subnet: "10.0.1.0/24"},
			Peers:  []cardproto.NetPeer{{Index: 2, IP: "10.0.1.11", MAC: "02:aa:00:00:00:02", Subnet: "10.0.1.0/24", Underlay: "127.0.0.1:9"}},
			Egress: []cardproto.NetRule{{Protocol: "all", FromPort: -1, ToPort: -1, CIDR: "0.0.0.0/0"}}, KeyEpochs: []uint32{1}}}
	sent := 0
	send := func(int, netip.AddrPort, []byte) error { sent++; return nil }
	pl, err := newPlane(cfg, []*keymem.Buf{testKey(t, 1)}, send, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pl.close)
	if m := pl.metrics(); m.ConntrackEntries != 0 || m.ConntrackAllowance == 0 {
		t.Fatalf("before any flow: %d entries, %d available", m.ConntrackEntries, m.ConntrackAllowance)
	}
	var p packet.Packet
	out := make([]byte, 0, 2048)
	flows := func() {
		for port := range uint16(3) {
			f := udpFrame(t, mac(1), mac(2), netip.AddrPortFrom(netip.MustParseAddr("10.0.1.10"), 5000+port),
				netip.MustParseAddrPort("10.0.1.11:53"), []byte("q"))
			pl.sw.fromGuest(0, &p, f, &out)
		}
	}
	flows()
	m := pl.metrics()
	if sent != 3 || m.TxPackets != 3 || m.TxSealed != 3 || m.ConntrackEntries != 3 {
		t.Fatalf("three flows sent %d: %+v", sent, m)
	}
	if m.ConntrackEntries+m.ConntrackAllowance != filter.DefaultMaxFlows {
		t.Errorf("%d entries and %d available, want %d together", m.ConntrackEntries, m.ConntrackAllowance, filter.DefaultMaxFlows)
	}
	// A packet of each flow moves its expiry by the new timeout: every
	// flow idles out at once, and the answer reclaims them.
	if err := pl.guard.f.SetTimeouts(filter.Timeouts{UDP: time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	flows()
	time.Sleep(time.Millisecond)
	if m := pl.metrics(); m.ConntrackEntries != 0 || m.ConntrackAllowance != filter.DefaultMaxFlows || m.TxSealed != 6 {
		t.Errorf("after every flow idled out: %+v", m)
	}
}

// TestPlaneMetadata: apply hands the metadata to the service (and takes
// it away), refuses metadata the service would not serve without
// changing anything, and the card's answer carries the service's counts.
func TestPlaneMetadata(t *testing.T) {
	cfg := &cardproto.NetConfig{InterfaceID: "eni-a", MAC: "02:aa:00:00:00:01", Pairs: 1, MTU: 1500,
		State: cardproto.NetState{VPCIndex: 7, VPCCIDR: "10.0.0.0/16", Gateway: "10.0.1.1", GatewayMAC: "02:a2:07:e0:00:01",
			Self:      cardproto.NetPeer{Index: 1, IP: "10.0.1.10", MAC: "02:aa:00:00:00:01", Subnet: "10.0.1.0/24"},
			KeyEpochs: []uint32{1}}}
	pl, err := newPlane(cfg, []*keymem.Buf{testKey(t, 1)}, func(int, netip.AddrPort, []byte) error { return nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pl.close)
	if pl.meta.Serves() {
		t.Fatal("serving without metadata")
	}
	st := cfg.State
	st.Metadata = &cardproto.NetMetadata{InstanceID: "i-1", HopLimit: 3}
	if err := pl.apply(&st, []*keymem.Buf{testKey(t, 1)}); err != nil {
		t.Fatal(err)
	}
	if d := pl.imds.Data(); d == nil || d.TTL != 3 {
		t.Fatal("the metadata did not reach the service")
	}
	bad := st
	bad.Metadata = &cardproto.NetMetadata{InstanceID: "i-1", HopLimit: 99}
	if err := pl.apply(&bad, []*keymem.Buf{testKey(t, 1)}); err == nil {
		t.Fatal("a hop limit of 99 applied")
	}
	if d := pl.imds.Data(); d == nil || d.TTL != 3 {
		t.Fatal("a refused state changed the service")
	}
	m := pl.metrics()
	if len(m.Metadata.Requests) != len(cardproto.MetadataOutcomes) {
		t.Fatalf("metadata counters %+v", m.Metadata)
	}
	if err := pl.apply(&cfg.State, []*keymem.Buf{testKey(t, 1)}); err != nil || pl.meta.Serves() {
		t.Fatalf("metadata withdrawn: %v, serving %v", err, pl.meta.Serves())
	}
}
