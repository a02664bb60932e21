package instances

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	cardnet "github.com/azote/azote/internal/cards/net"
	"github.com/azote/azote/internal/cards/net/encap"
	"github.com/azote/azote/internal/cards/net/packet"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/vhostuser"
)

// guest drives one net card's vhost-user socket with the Go frontend, as
// the guest's virtio-net driver would: one queue pair, MRG_RXBUF.
type guest struct {
	t     *testing.T
	f     *vhostuser.Frontend
	mac   packet.MAC
	ip    netip.Addr
	iface string
	index uint32 // the interface's numeric id
	under netip.AddrPort
	// metrics is the card's metrics socket.
	metrics string
	txGPA   uint64
	txBuf   []byte
}

const rxBufSize = 2048

func dialGuest(t *testing.T, sock, metrics string, n api.InstanceNetworkInterface, e vpcs.Endpoint) *guest {
	t.Helper()
	f, err := vhostuser.Dial(sock, vhostuser.FrontendConfig{MemSize: 8 << 20, NumQueues: 3, QueueSize: 256,
		Features: 1 << cardnet.FMrgRxbuf, QueuePairs: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	g := &guest{t: t, f: f, ip: netip.MustParseAddr(n.PrivateIP), iface: n.ID, index: e.NumericID, under: e.Underlay, metrics: metrics}
	copy(g.mac[:], e.MAC)
	if g.txGPA, g.txBuf, err = f.Alloc(packet.VnetHdrLen + rxBufSize); err != nil {
		t.Fatal(err)
	}
	q := f.Queues[0]
	for range 128 {
		gpa, _, err := f.Alloc(rxBufSize)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Add([]vhostuser.Buf{{Addr: gpa, Len: rxBufSize, Write: true}}); err != nil {
			t.Fatal(err)
		}
	}
	q.Kick()
	return g
}

// send transmits frame and waits until the card took it.
func (g *guest) send(frame []byte) {
	g.t.Helper()
	clear(g.txBuf[:packet.VnetHdrLen])
	copy(g.txBuf[packet.VnetHdrLen:], frame)
	q := g.f.Queues[1]
	if _, err := q.Add([]vhostuser.Buf{{Addr: g.txGPA, Len: uint32(packet.VnetHdrLen + len(frame))}}); err != nil {
		g.t.Fatal(err)
	}
	q.Kick()
	for deadline := time.Now().Add(5 * time.Second); q.InFlight() > 0; {
		if time.Now().After(deadline) {
			g.t.Fatal("the card does not take a frame")
		}
		q.Wait(100 * time.Millisecond)
		q.Reap(nil)
	}
}

// receive passes each frame delivered to the guest to fn, waiting up to
// wait for the first, and gives the buffers back to the card.
func (g *guest) receive(wait time.Duration, fn func(frame []byte)) {
	g.t.Helper()
	q := g.f.Queues[0]
	if wait > 0 {
		q.Wait(wait)
	}
	done := q.Reap(nil)
	// Every address first: giving a buffer back reuses a descriptor.
	addrs := make([]uint64, len(done))
	for i, d := range done {
		addrs[i] = binary.LittleEndian.Uint64(g.f.Mem[q.DescAddr()+16*uint64(d.Head):])
		fn(g.f.Mem[addrs[i]+packet.VnetHdrLen : addrs[i]+uint64(d.Written)])
	}
	for _, addr := range addrs {
		if _, err := q.Add([]vhostuser.Buf{{Addr: addr, Len: rxBufSize, Write: true}}); err != nil {
			g.t.Fatal(err)
		}
	}
	if len(done) > 0 {
		q.Kick()
	}
}

// frame is a UDP frame from g to dst carrying payload.
func (g *guest) frame(dstMAC packet.MAC, dst netip.Addr, payload []byte) []byte {
	g.t.Helper()
	f, err := packet.AppendUDP(nil, &packet.UDPFrame{SrcMAC: g.mac, DstMAC: dstMAC,
		Src: netip.AddrPortFrom(g.ip, 4000), Dst: netip.AddrPortFrom(dst, 5000)}, payload)
	if err != nil {
		g.t.Fatal(err)
	}
	return f
}

// drops reads the card's drop counters.
func (g *guest) drops() map[string]uint64 {
	g.t.Helper()
	c, err := net.Dial("unix", g.metrics)
	if err != nil {
		g.t.Fatal(err)
	}
	defer c.Close()
	m, err := cardproto.ReadNetMetrics(c)
	if err != nil {
		g.t.Fatal(err)
	}
	out := map[string]uint64{}
	for i, n := range m.Drops {
		out[cardproto.NetDrops[i]] = n
	}
	return out
}

// TestRotationLossless: two running instances of one VPC, each with a
// real net card driven by the Go frontend, exchange a steady stream of
// frames both ways while the VPC's key is rotated: every frame arrives,
// none is dropped as undecryptable, and both cards then seal with the new
// epoch. Then, at card level: a datagram sealed under the previous epoch
// still opens, a replayed one and a forged one are dropped and counted,
// and the next rotation drops the epoch before.
func TestRotationLossless(t *testing.T) {
	fx := newNetFixture(t)
	guests := []*guest{fx.runGuest("g0", "10.0.1.10"), fx.runGuest("g1", "10.0.1.11")}
	a, b := guests[0], guests[1]
	keyState := func() (cur, next uint32) {
		m, err := fx.nets.Mapping(fx.vpc.ID)
		if err != nil {
			t.Fatal(err)
		}
		return m.KeyEpoch, m.NextKeyEpoch
	}

	// The stream: one frame each way per round, numbered. The key is
	// rotated once the stream runs, again 100 rounds after each rotation
	// ended, rotations times, and the stream goes on until well after
	// the last one ended.
	const rotations = 3
	var sent, got [2]int
	seen := [2]map[uint32]bool{{}, {}}
	count := func(to int) func([]byte) {
		return func(f []byte) {
			var p packet.Packet
			if err := packet.Parse(f, &p); err != nil {
				t.Fatalf("a frame that does not parse: %v", err)
			}
			pl := p.TransportPayload(f)
			if len(pl) < 8 || string(pl[4:8]) != "strm" {
				return
			}
			n := binary.BigEndian.Uint32(pl)
			if seen[to][n] {
				t.Fatalf("frame %d delivered twice", n)
			}
			seen[to][n] = true
			got[to]++
		}
	}
	after, next := -1, 200 // the round of the end, of the next rotation
	epoch := uint32(1)
	for round := 0; after < 0 || round < after; round++ {
		pl := binary.BigEndian.AppendUint32(nil, uint32(round))
		pl = append(pl, "strm"...)
		pl = append(pl, bytes.Repeat([]byte{byte(round)}, 200)...)
		a.send(a.frame(b.mac, b.ip, pl))
		b.send(b.frame(a.mac, a.ip, pl))
		sent[0]++
		sent[1]++
		b.receive(0, count(1))
		a.receive(0, count(0))
		switch {
		case round == next:
			if r, err := fx.nets.RotateKey(fx.vpc.ID); err != nil || r.KeyEpoch != epoch || r.NextKeyEpoch != epoch+1 {
				t.Fatalf("rotate: %+v %v", r, err)
			}
			next = -1
		case next < 0 && after < 0:
			if cur, pending := keyState(); cur == epoch+1 && pending == 0 {
				epoch++
				next = round + 100
				if epoch == 1+rotations {
					next, after = -1, round+500 // the cards hear of it after the store
				}
			}
			if round > 200_000 {
				t.Fatal("the rotation does not end")
			}
		}
	}
	for deadline := time.Now().Add(10 * time.Second); (got[0] < sent[0] || got[1] < sent[1]) && time.Now().Before(deadline); {
		b.receive(50*time.Millisecond, count(1))
		a.receive(50*time.Millisecond, count(0))
	}
	for i, g := range guests {
		d := g.drops()
		if d["decrypt"] != 0 || d["replay"] != 0 || got[i] != sent[i] {
			t.Errorf("card %d received %d of %d frames; drops %v", i, got[i], sent[i], d)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d frames each way, the key rotated %d times under them", sent[0], rotations)

	// A probe, playing a card of the VPC: each card seals what it sends
	// it with the new epoch.
	pr := newProbe(fx)
	pr.sealsWith(a, epoch)
	pr.sealsWith(b, epoch)

	// The probe seals as a card of the VPC would, under an epoch of its
	// choosing, and sends to b's card.
	old := pr.sealer(epoch - 1)
	first := "sealed under the previous epoch"
	pkt := pr.seal(old, b, first)
	pr.expect(b, "the previous epoch", pkt, first, "")
	pr.expect(b, "replayed", pkt, first, "replay")
	forged := pr.seal(old, b, "forged")
	forged[len(forged)-20] ^= 1
	pr.expect(b, "forged", forged, "forged", "decrypt")

	// The next rotation waits for the probe too (it has an underlay,
	// as a card on another host would): until it says it holds the next
	// epoch, the cards open it and still seal with the current one.
	e := epoch
	if r, err := fx.nets.RotateKey(fx.vpc.ID); err != nil || r.NextKeyEpoch != e+1 {
		t.Fatalf("rotate: %+v %v", r, err)
	}
	fx.waitHeld(e+1, a, b)
	if cur, next := keyState(); cur != e || next != e+1 {
		t.Fatalf("before the probe has the next epoch: current %d, next %d", cur, next)
	}
	pr.sealsWith(a, e)
	pr.sealsWith(b, e)
	msg := "sealed under the next epoch"
	pr.expect(b, "the next epoch", pr.seal(pr.sealer(e+1), b, msg), msg, "")
	if err := fx.nets.KeyAccepted(pr.iface, e+1); err != nil {
		t.Fatal(err)
	}
	if cur, next := keyState(); cur != e+1 || next != 0 {
		t.Fatalf("once every card has the next epoch: current %d, next %d", cur, next)
	}
	pr.sealsWith(a, e+1)
	pr.sealsWith(b, e+1)
	msg = "sealed under an epoch now forgotten"
	pr.expect(b, "the epoch before the previous", pr.seal(old, b, msg), msg, "decrypt")
	msg = "sealed under the previous epoch again"
	pr.expect(b, "the previous epoch", pr.seal(pr.sealer(e), b, msg), msg, "")
}

// TestRotationGrace: a card that never says it has the next key (here
// the probe, as a card on a host cut off from the store would) holds a
// rotation up to its grace only; azoted's timer then ends it, and the
// cards it runs seal with the new epoch.
func TestRotationGrace(t *testing.T) {
	fx := newNetFixtureGrace(t, 500*time.Millisecond)
	a := fx.runGuest("g0", "10.0.1.10")
	pr := newProbe(fx)
	pr.sealsWith(a, 1)
	if r, err := fx.nets.RotateKey(fx.vpc.ID); err != nil || r.KeyEpoch != 1 || r.NextKeyEpoch != 2 {
		t.Fatalf("rotate: %+v %v", r, err)
	}
	fx.waitHeld(2, a)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m, err := fx.nets.Mapping(fx.vpc.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.KeyEpoch == 2 && m.NextKeyEpoch == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("past the grace: current %d, next %d", m.KeyEpoch, m.NextKeyEpoch)
		}
	}
	pr.sealsWith(a, 2)
}

// runGuest runs an instance in subnet "front" with address ip and
// drives its card as its guest.
func (fx *netFixture) runGuest(name, ip string) *guest {
	t := fx.t
	t.Helper()
	inst, err := fx.s.Run(context.Background(), api.RunInstanceRequest{Name: name, Image: "default", VCPUs: 1, MemoryMiB: 64,
		Subnet: "front", PrivateIP: ip})
	if err != nil {
		t.Fatal(err)
	}
	fx.waitState(inst.ID, api.StateRunning)
	n := inst.NetworkInterfaces[0]
	return dialGuest(t, fx.s.netSocket(inst.ID, n.ID), fx.s.netPath(inst.ID, n.ID, "metrics"), n, fx.endpoint(n.ID))
}

func (fx *netFixture) endpoint(ifaceID string) vpcs.Endpoint {
	fx.t.Helper()
	m, err := fx.nets.Mapping(fx.vpc.ID)
	if err != nil {
		fx.t.Fatal(err)
	}
	for _, e := range m.Endpoints {
		if e.InterfaceID == ifaceID {
			return e
		}
	}
	fx.t.Fatalf("no endpoint %s", ifaceID)
	return vpcs.Endpoint{}
}

// waitHeld waits until the cards of gs have recorded that they hold the
// keys up to epoch (vpcs.KeyAccepted), reading the records.
func (fx *netFixture) waitHeld(epoch uint32, gs ...*guest) {
	t := fx.t
	t.Helper()
	held := func() []uint32 {
		var out []uint32
		err := fx.db.View(func(tx store.Tx) error {
			for _, g := range gs {
				var u struct {
					KeyEpoch uint32 `json:"key_epoch"`
				}
				if err := tx.Get(vpcs.UnderlayTable, g.iface, &u); err != nil {
					return err
				}
				out = append(out, u.KeyEpoch)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h := held()
		if !slices.ContainsFunc(h, func(e uint32) bool { return e < epoch }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cards record that they hold epochs %v, not %d", h, epoch)
		}
	}
}

// probe is an interface of the VPC whose "card" is the test: a UDP
// socket on loopback, recorded as the interface's underlay, holding the
// keys it asks the network owner for.
type probe struct {
	fx    *netFixture
	iface string
	ep    vpcs.Endpoint
	mac   packet.MAC
	pc    *net.UDPConn
}

func newProbe(fx *netFixture) *probe {
	t := fx.t
	t.Helper()
	n, err := fx.nets.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: fx.subnet.ID})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if err := fx.nets.SetUnderlay(n.ID, pc.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	pr := &probe{fx: fx, iface: n.ID, ep: fx.endpoint(n.ID), pc: pc}
	copy(pr.mac[:], pr.ep.MAC)
	return pr
}

// sealsWith has g's guest send to the probe until a datagram sealed with
// epoch want arrives; until its card knows the probe as a peer, it
// drops the frame (no route).
func (pr *probe) sealsWith(g *guest, want uint32) {
	t := pr.fx.t
	t.Helper()
	buf := make([]byte, 4096)
	for { // what earlier calls left
		pr.pc.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := pr.pc.Read(buf); err != nil {
			break
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatalf("card of %v: no datagram sealed with epoch %d reached the probe", g.ip, want)
		}
		g.send(g.frame(pr.mac, pr.ep.IP, []byte("to the probe")))
		pr.pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := pr.pc.Read(buf)
		if err != nil {
			continue
		}
		h, err := encap.ParseHeader(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if h.Epoch == want {
			return
		}
	}
}

// sealer seals as the probe's card would under epoch's key.
func (pr *probe) sealer(epoch uint32) *encap.Sender {
	t := pr.fx.t
	t.Helper()
	keys, err := pr.fx.nets.Keys(pr.fx.vpc.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer vpcs.FreeKeys(keys)
	m, err := pr.fx.nets.Mapping(pr.fx.vpc.ID)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := encap.NewKeyring(m.NumericID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ring.Close)
	for _, k := range keys {
		if k.Epoch == epoch {
			if err := ring.SetKeys(epoch, k.Key.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := encap.NewSender(ring, pr.ep.NumericID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// seal is a datagram from the probe to g's card carrying msg.
func (pr *probe) seal(s *encap.Sender, g *guest, msg string) []byte {
	t := pr.fx.t
	t.Helper()
	f, err := packet.AppendUDP(nil, &packet.UDPFrame{SrcMAC: pr.mac, DstMAC: g.mac,
		Src: netip.AddrPortFrom(pr.ep.IP, 4000), Dst: netip.AddrPortFrom(g.ip, 5000)}, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := s.Seal(nil, g.index, f)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// expect sends pkt, which carries msg, to g's card and waits until msg is
// delivered to g's guest (drop "") or until the card counts one more
// drop under drop (and delivers nothing).
func (pr *probe) expect(g *guest, what string, pkt []byte, msg, drop string) {
	t := pr.fx.t
	t.Helper()
	before := g.drops()
	if _, err := pr.pc.WriteToUDPAddrPort(pkt, g.under); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: neither delivered nor dropped; drops %v", what, g.drops())
		}
		delivered := false
		g.receive(50*time.Millisecond, func(f []byte) {
			var p packet.Packet
			if packet.Parse(f, &p) == nil && string(p.TransportPayload(f)) == msg {
				delivered = true
			}
		})
		after := g.drops()
		switch {
		case delivered && drop == "":
			return
		case delivered:
			t.Fatalf("%s: delivered", what)
		case drop != "" && after[drop] == before[drop]+1:
			return
		case drop != "" && after[drop] != before[drop]:
			t.Fatalf("%s: drops[%s] went from %d to %d", what, drop, before[drop], after[drop])
		}
	}
}

// TestRotationAdopt: a rotation asked while no azoted runs here
// (as from another host, through the store) reaches the cards the next
// azoted adopts, and ends once they and the probe have the new key.
func TestRotationAdopt(t *testing.T) {
	fx := newNetFixture(t)
	a := fx.runGuest("g0", "10.0.1.10")
	b := fx.runGuest("g1", "10.0.1.11")
	pr := newProbe(fx)
	pr.sealsWith(a, 1)
	fx.close()

	st, err := store.OpenBolt(filepath.Join(fx.dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	hostKey, esc, err := keys.OpenHost(filepath.Join(fx.dir, "host.key"))
	if err != nil {
		t.Fatal(err)
	}
	esc.Free()
	other := vpcs.New(vpcs.Config{Store: st, Keys: hostKey, HostID: "host-b"})
	r, err := other.RotateKey(fx.vpc.ID)
	st.Close()
	if err != nil || r.KeyEpoch != 1 || r.NextKeyEpoch != 2 {
		t.Fatalf("rotate: %+v %v", r, err)
	}

	fx.start()
	fx.waitHeld(2, a, b)
	if err := fx.nets.KeyAccepted(pr.iface, 2); err != nil {
		t.Fatal(err)
	}
	pr.sealsWith(a, 2)
	pr.sealsWith(b, 2)
}
