package controller

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	netcard "github.com/azote/azote/internal/cards/net"
	"github.com/azote/azote/internal/cards/net/packet"
	"github.com/azote/azote/internal/testutil"
	"github.com/azote/azote/internal/vhostuser"
)

// guestNIC plays the guest of one interface: the Go vhost-user frontend
// connected to the real card azoted started for it.
type guestNIC struct {
	inst api.Instance
	ni   api.InstanceNetworkInterface
	mac  packet.MAC
	ip   netip.Addr
	f    *vhostuser.Frontend
	rx   uint64 // guest address of the one receive buffer posted
}

const rxBufLen = 2048

func (fx *fixture) guestNIC(inst api.Instance) *guestNIC {
	t := fx.t
	t.Helper()
	ni := inst.NetworkInterfaces[0]
	g := &guestNIC{inst: inst, ni: ni, ip: netip.MustParseAddr(ni.PrivateIP)}
	var err error
	if g.mac, err = netcard.ParseMAC(ni.MAC); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(fx.cfg.StateDir, "instances", inst.ID, ni.ID+".sock")
	g.f, err = vhostuser.Dial(sock, vhostuser.FrontendConfig{MemSize: 4 << 20, NumQueues: 3, QueueSize: 64,
		Features: 1 << netcard.FMrgRxbuf, QueuePairs: 1})
	if err != nil {
		t.Fatalf("connecting to the card of %s: %v", ni.ID, err)
	}
	t.Cleanup(func() { g.f.Close() })
	return g
}

// post offers the card one receive buffer.
func (g *guestNIC) post(t *testing.T) {
	t.Helper()
	gpa, _, err := g.f.Alloc(rxBufLen)
	if err != nil {
		t.Fatal(err)
	}
	q := g.f.Queues[0]
	if _, err := q.Add([]vhostuser.Buf{{Addr: gpa, Len: rxBufLen, Write: true}}); err != nil {
		t.Fatal(err)
	}
	q.Kick()
	g.rx = gpa
}

// received returns the frame in the receive buffer once the card has
// filled it, else nil.
func (g *guestNIC) received(t *testing.T) []byte {
	t.Helper()
	q := g.f.Queues[0]
	q.Wait(50 * time.Millisecond)
	done := q.Reap(nil)
	if len(done) == 0 {
		return nil
	}
	b := g.f.Mem[g.rx : g.rx+uint64(done[0].Written)]
	return append([]byte(nil), b[packet.VnetHdrLen:]...)
}

// send transmits a frame (no offloads) and waits for the card to take it.
func (g *guestNIC) send(t *testing.T, frame []byte) {
	t.Helper()
	gpa, b, err := g.f.Alloc(packet.VnetHdrLen + len(frame))
	if err != nil {
		t.Fatal(err)
	}
	(&packet.VnetHdr{}).Put(b)
	copy(b[packet.VnetHdrLen:], frame)
	q := g.f.Queues[1]
	if _, err := q.Add([]vhostuser.Buf{{Addr: gpa, Len: uint32(len(b))}}); err != nil {
		t.Fatal(err)
	}
	q.Kick()
	for deadline := time.Now().Add(10 * time.Second); q.InFlight() > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the card did not take a frame")
		}
		q.Wait(100 * time.Millisecond)
		q.Reap(nil)
	}
}

// metric returns the value of one sample of azoted's /metrics, or -1.
func (fx *fixture) metric(name, labels string) float64 {
	fx.t.Helper()
	var out bytes.Buffer
	if err := fx.c.WriteMetrics(context.Background(), &out); err != nil {
		fx.t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+"{"+labels+"}") + ` (\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		fx.t.Fatalf("%s{%s}: %v", name, labels, err)
	}
	return v
}

// The counters of real net cards reach azoted's /metrics under the
// interface and instance azoted knows them by: frames and bytes each
// way, a spoofed frame by its reason, the flows in each connection
// table. (Its name is short: the sockets of its cards sit in
// t.TempDir(), whose path holds it, and a socket's path has 107 bytes.)
func TestNetMetrics(t *testing.T) {
	logw := &testutil.LogBuffer{}
	fx := newFixtureLog(t, logw)
	defer func() {
		if t.Failed() {
			t.Logf("azoted's log:\n%s", logw.String())
		}
	}()
	c := fx.c
	ctx := context.Background()
	v, err := c.CreateVPC(ctx, api.CreateVPCRequest{Name: "prod", CIDR: "10.0.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := c.CreateSubnet(ctx, api.CreateSubnetRequest{VPC: v.ID, Name: "front", CIDR: "10.0.1.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string) api.Instance {
		inst, err := c.RunInstance(ctx, api.RunInstanceRequest{Name: name, Image: "default", VCPUs: 1, MemoryMiB: 64, Subnet: sn.ID})
		if err != nil {
			t.Fatal(err)
		}
		return fx.waitState(inst.ID, api.StateRunning)
	}
	// b first: a's card starts knowing where b's receives, and b's card
	// learns of a by a push that may land after a's first frame.
	b := fx.guestNIC(run("b"))
	a := fx.guestNIC(run("a"))
	la := fmt.Sprintf(`interface=%q,instance=%q`, a.ni.ID, a.inst.ID)
	lb := fmt.Sprintf(`interface=%q,instance=%q`, b.ni.ID, b.inst.ID)
	for _, l := range []string{la, lb} {
		if n := fx.metric("azote_interface_packets_total", l+`,direction="tx"`); n != 0 {
			t.Fatalf("before any frame, %s sent %v", l, n)
		}
	}

	b.post(t)
	frame, err := packet.AppendUDP(nil, &packet.UDPFrame{SrcMAC: a.mac, DstMAC: b.mac,
		Src: netip.AddrPortFrom(a.ip, 4000), Dst: netip.AddrPortFrom(b.ip, 5000)}, []byte("counted"))
	if err != nil {
		t.Fatal(err)
	}
	// Each frame a sends is delivered to b, or dropped by b's card as
	// from an unknown peer until the push reaches it: its fate is known
	// before the next is sent, so every count below is exact.
	sent, unknown := 0, 0
	for got := []byte(nil); got == nil; {
		if sent == 20 {
			t.Fatalf("%d frames sent, none delivered", sent)
		}
		a.send(t, frame)
		sent++
		for deadline := time.Now().Add(10 * time.Second); got == nil; {
			if got = b.received(t); got != nil {
				break
			}
			if n := int(fx.metric("azote_interface_drops_total", lb+`,reason="unknown_peer"`)); n > unknown {
				unknown = n
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a frame was neither delivered nor dropped")
			}
		}
		if got != nil && !bytes.Equal(got, frame) {
			t.Fatalf("b received %x, want %x", got, frame)
		}
	}
	spoofed, err := packet.AppendUDP(nil, &packet.UDPFrame{SrcMAC: a.mac, DstMAC: b.mac,
		Src: netip.MustParseAddrPort("10.0.1.99:4000"), Dst: netip.AddrPortFrom(b.ip, 5000)}, []byte("spoofed"))
	if err != nil {
		t.Fatal(err)
	}
	a.send(t, spoofed)

	for _, tc := range []struct {
		name, labels string
		want         int
	}{
		{"azote_interface_packets_total", la + `,direction="tx"`, sent + 1},
		{"azote_interface_bytes_total", la + `,direction="tx"`, sent*len(frame) + len(spoofed)},
		{"azote_interface_sealed_packets_total", la, sent},
		{"azote_interface_drops_total", la + `,reason="spoof"`, 1},
		{"azote_interface_conntrack_entries", la, 1},
		{"azote_interface_packets_total", lb + `,direction="rx"`, 1},
		{"azote_interface_bytes_total", lb + `,direction="rx"`, len(frame)},
		{"azote_interface_drops_total", lb + `,reason="unknown_peer"`, unknown},
		{"azote_interface_drops_total", lb + `,reason="spoof"`, 0},
		{"azote_interface_conntrack_entries", lb, 1},
		{"azote_interface_packets_total", lb + `,direction="tx"`, 0},
	} {
		if got := fx.metric(tc.name, tc.labels); got != float64(tc.want) {
			t.Errorf("%s{%s} = %v, want %d", tc.name, tc.labels, got, tc.want)
		}
	}
	// The whole scrape, blk and net families together, stays well-formed.
	var out bytes.Buffer
	if err := c.WriteMetrics(ctx, &out); err != nil {
		t.Fatal(err)
	}
	fam := families(t, strings.Split(strings.TrimSpace(out.String()), "\n"))
	if n := len(fam["azote_interface_drops_total"]); n != 2*len(cardproto.NetDrops) {
		t.Errorf("%d drop samples for two interfaces, want %d", n, 2*len(cardproto.NetDrops))
	}
	if unknown != sent-1 {
		t.Errorf("%d frames sent, %d dropped as from an unknown peer, 1 delivered", sent, unknown)
	}
}
