package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/cards/cardproto"
	cardnet "github.com/azote/azote/internal/cards/net"
	"github.com/azote/azote/internal/cards/net/packet"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/sandbox"
	"github.com/azote/azote/internal/vhostuser"
)

// The VPC of the two cards: interfaces A and B in one subnet, each
// security group letting in UDP from the VPC and letting out everything,
// as a default group of a user who opened UDP would.
var (
	vpcCIDR    = "10.0.0.0/16"
	subnetCIDR = "10.0.1.0/24"
	gatewayIP  = "10.0.1.1"
	gatewayMAC = "02:a2:07:e0:00:01" // internal/controller/instances.GatewayMAC
	ipA        = netip.MustParseAddr("10.0.1.10")
	ipB        = netip.MustParseAddr("10.0.1.11")
	macA       = packet.MAC{0x02, 0xaa, 0, 0, 0, 0x0a}
	macB       = packet.MAC{0x02, 0xaa, 0, 0, 0, 0x0b}
)

// Ring sizes of the frontends: txSlots frames per transmit queue; every
// receive queue is filled with buffers of rxBufLen bytes, as Linux's
// virtio-net driver fills its rings (every receive loop of a card reads
// the one underlay socket, so any of them may take any frame).
const (
	ringSize = 1024
	txSlots  = 256
	rxBufLen = 2048
)

// cardSide is one card and the Go frontend playing its guest.
type cardSide struct {
	pid     int
	fe      *vhostuser.Frontend
	metrics string
}

// cardPair is interfaces A and B of one VPC, each served by its own
// azote-card process, their underlays on loopback.
type cardPair struct {
	a, b cardSide
	stop func()
}

type cardOpts struct {
	bin         string
	dir         string
	plaintext   bool
	pairs       int
	underlayMTU int
}

// guestMTU is what the card tells its guest: the underlay's MTU less the
// inner Ethernet header and the encapsulation (header, tag, UDP, IPv4),
// as azoted computes it.
func guestMTU(underlay int) int { return underlay - packet.EthernetHeaderLen - cardnet.TunnelOverhead }

// startCards starts the two cards and connects a frontend to each. As
// root they are started the way azoted starts them (cardhost.StartNet:
// a uid of their own each, seccomp, donated sockets); otherwise directly
// with the same donations under the caller's uid.
func startCards(o cardOpts) (*cardPair, error) {
	uA, addrA, err := bindUnderlay()
	if err != nil {
		return nil, err
	}
	defer uA.Close()
	uB, addrB, err := bindUnderlay()
	if err != nil {
		return nil, err
	}
	defer uB.Close()
	key := make([]byte, cardproto.NetKeyBytes)
	rand.Read(key)
	peer := func(idx uint32, ip netip.Addr, mac packet.MAC, under netip.AddrPort) cardproto.NetPeer {
		p := cardproto.NetPeer{Index: idx, IP: ip.String(), MAC: mac.String(), Subnet: subnetCIDR}
		if under.IsValid() {
			p.Underlay = under.String()
		}
		return p
	}
	state := func(self, other cardproto.NetPeer) cardproto.NetState {
		return cardproto.NetState{VPCIndex: 1, VPCCIDR: vpcCIDR, Gateway: gatewayIP, GatewayMAC: gatewayMAC,
			Self: self, Peers: []cardproto.NetPeer{other},
			Ingress:   []cardproto.NetRule{{Protocol: "udp", FromPort: 0, ToPort: 65535, CIDR: vpcCIDR}},
			Egress:    []cardproto.NetRule{{Protocol: "all", FromPort: -1, ToPort: -1, CIDR: "0.0.0.0/0"}},
			KeyEpochs: []uint32{1}}
	}
	cfg := func(id string, mac packet.MAC, st cardproto.NetState) cardproto.NetConfig {
		return cardproto.NetConfig{InterfaceID: id, VPCID: "vpc-bench", MAC: mac.String(), Pairs: o.pairs,
			MTU: guestMTU(o.underlayMTU), Plaintext: o.plaintext, State: st}
	}
	cfgA := cfg("eni-a", macA, state(peer(1, ipA, macA, netip.AddrPort{}), peer(2, ipB, macB, addrB)))
	cfgB := cfg("eni-b", macB, state(peer(2, ipB, macB, netip.AddrPort{}), peer(1, ipA, macA, addrA)))

	cp := &cardPair{}
	var stops []func()
	cp.stop = func() {
		if cp.a.fe != nil {
			cp.a.fe.Close()
		}
		if cp.b.fe != nil {
			cp.b.fe.Close()
		}
		for _, s := range stops {
			s()
		}
	}
	var host *cardhost.Host
	if os.Geteuid() == 0 {
		r, err := sandbox.ParseRange("3990000:16")
		if err != nil {
			return nil, err
		}
		host = &cardhost.Host{Binary: o.bin, UIDs: sandbox.NewAllocator(r), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	for _, c := range []struct {
		side *cardSide
		cfg  cardproto.NetConfig
		u    *os.File
	}{{&cp.a, cfgA, uA}, {&cp.b, cfgB, uB}} {
		sock := filepath.Join(o.dir, c.cfg.InterfaceID+".sock")
		c.side.metrics = filepath.Join(o.dir, c.cfg.InterfaceID+".metrics.sock")
		logPath := filepath.Join(o.dir, c.cfg.InterfaceID+".log")
		var pid int
		var stop func()
		if host != nil {
			card, err := host.StartNet(cardhost.Net{
				Config: c.cfg,
				State: func() (cardproto.NetState, []*keymem.Buf, error) {
					k, err := keymem.New(len(key))
					if err != nil {
						return cardproto.NetState{}, nil, err
					}
					copy(k.Bytes(), key)
					return c.cfg.State, []*keymem.Buf{k}, nil
				},
				Underlay:       func() (*os.File, error) { return c.u, nil },
				Socket:         sock,
				MetricsSocket:  c.side.metrics,
				ControlSocket:  filepath.Join(o.dir, c.cfg.InterfaceID+".control.sock"),
				OpenLog:        func() (*os.File, error) { return os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) },
				LogRoom:        1 << 20,
				AllowPlaintext: o.plaintext,
			})
			if err != nil {
				cp.stop()
				return nil, err
			}
			pid, stop = card.Handle().PID, func() { host.Stop([]*cardhost.Card{card}) }
		} else {
			pid, stop, err = startDirect(o.bin, c.cfg, key, c.u, sock, c.side.metrics, logPath)
			if err != nil {
				cp.stop()
				return nil, err
			}
		}
		stops = append(stops, stop)
		c.side.pid = pid
		c.side.fe, err = dial(sock, o.pairs)
		if err != nil {
			cp.stop()
			return nil, fmt.Errorf("%s: %w; the end of its log:\n%s", c.cfg.InterfaceID, err, tail(logPath, 2000))
		}
	}
	return cp, nil
}

// startDirect starts a card with the donations cardhost makes, without
// a uid of its own (for a caller that is not root).
func startDirect(bin string, cfg cardproto.NetConfig, key []byte, underlay *os.File, sock, metrics, logPath string) (int, func(), error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "channel"), os.NewFile(uintptr(fds[1]), "channel")
	defer ours.Close()
	defer theirs.Close()
	var d cardhost.Donation
	for _, s := range []struct{ name, path string }{{cardproto.FDListen, sock}, {cardproto.FDMetrics, metrics}} {
		f, err := listenFile(s.path)
		if err != nil {
			return 0, nil, err
		}
		defer f.Close()
		d.Donate(s.name, f)
	}
	d.Donate(cardproto.FDChannel, theirs)
	d.Donate(cardproto.FDUnderlay, underlay)
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, nil, err
	}
	defer log.Close()
	args := []string{cardproto.KindNet, "--interface", cfg.InterfaceID}
	if cfg.Plaintext {
		args = append(args, "--allow-plaintext")
	}
	cmd := exec.Command(bin, args...)
	d.Apply(cmd)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	theirs.Close()
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	if err := cardproto.SendNet(ours, cfg, [][]byte{key}); err != nil {
		stop()
		return 0, nil, err
	}
	// The card closes its end once it has read its configuration.
	ours.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := ours.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		stop()
		b, _ := os.ReadFile(logPath)
		return 0, nil, fmt.Errorf("the card did not take its configuration (%v): %s", err, b)
	}
	return cmd.Process.Pid, stop, nil
}

// tail is the last n bytes of a card's log.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b[max(int64(len(b))-n, 0):])
}

func listenFile(path string) (*os.File, error) {
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	defer l.Close()
	return l.File()
}

// bindUnderlay binds a UDP socket on loopback as azoted binds a card's
// underlay (instances.bindUnderlay: 4 MiB socket buffers).
func bindUnderlay() (*os.File, netip.AddrPort, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, netip.AddrPort{}, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, netip.AddrPort{}, err
	}
	return os.NewFile(uintptr(fd), "underlay"), netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)), nil
}

// dial connects a frontend as QEMU would for a guest with pairs vCPUs:
// every queue pair, the control queue, mergeable receive buffers.
func dial(sock string, pairs int) (*vhostuser.Frontend, error) {
	var fe *vhostuser.Frontend
	var err error
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		fe, err = vhostuser.Dial(sock, vhostuser.FrontendConfig{MemSize: 32 << 20, NumQueues: 2*pairs + 1, QueueSize: ringSize,
			Features: 1<<cardnet.FMrgRxbuf | 1<<cardnet.FMQ | 1<<cardnet.FCtrlVQ | 1<<cardnet.FMAC | 1<<cardnet.FMTU, QueuePairs: pairs})
		if err == nil || !errors.Is(err, unix.ECONNREFUSED) || time.Since(start) > 2*time.Second {
			return fe, err
		}
	}
}

// drops reads a card's drop counters (the non-zero ones).
func drops(metrics string) map[string]uint64 {
	c, err := net.DialTimeout("unix", metrics, time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	m, err := cardproto.ReadNetMetrics(c)
	if err != nil {
		return nil
	}
	out := map[string]uint64{}
	for i, v := range m.Drops {
		if v != 0 {
			out[cardproto.NetDrops[i]] = v
		}
	}
	return out
}

// cardFrame is the Ethernet frame guest A sends guest B on pair q: a UDP
// datagram carrying payload, as a guest's stack builds it.
func cardFrame(from, to netip.Addr, fromMAC, toMAC packet.MAC, sport, dport uint16, payload []byte) []byte {
	f, err := packet.AppendUDP(nil, &packet.UDPFrame{SrcMAC: fromMAC, DstMAC: toMAC,
		Src: netip.AddrPortFrom(from, sport), Dst: netip.AddrPortFrom(to, dport), DontFragment: true}, payload)
	if err != nil {
		panic(err) // sizes are the bench's own
	}
	return f
}

// slotOf reads the template index a frame's UDP payload starts with.
func slotOf(frame []byte) int {
	const at = packet.EthernetHeaderLen + 20 + 8
	if len(frame) < at+4 {
		return -1
	}
	return int(binary.BigEndian.Uint32(frame[at:]))
}

// txSlot is one frame in guest memory, behind a zero virtio-net header:
// written once, sent again and again.
type txSlot struct {
	gpa uint64
	n   uint32
}

// rxBuf is one receive buffer in guest memory.
type rxBuf struct {
	gpa uint64
	b   []byte
}

// allocTX places frames in fe's memory. (Alloc is not safe for
// concurrent use: every buffer is placed before the loops start.)
func allocTX(fe *vhostuser.Frontend, frames [][]byte) ([]txSlot, error) {
	slots := make([]txSlot, len(frames))
	for i, f := range frames {
		gpa, b, err := fe.Alloc(packet.VnetHdrLen + len(f))
		if err != nil {
			return nil, err
		}
		clear(b[:packet.VnetHdrLen])
		copy(b[packet.VnetHdrLen:], f)
		slots[i] = txSlot{gpa, uint32(len(b))}
	}
	return slots, nil
}

// allocRX places n receive buffers in fe's memory.
func allocRX(fe *vhostuser.Frontend, n int) ([]rxBuf, error) {
	bufs := make([]rxBuf, n)
	for k := range bufs {
		gpa, b, err := fe.Alloc(rxBufLen)
		if err != nil {
			return nil, err
		}
		bufs[k] = rxBuf{gpa, b}
	}
	return bufs, nil
}

// sendLoop keeps transmit queue 2q+1 of fe fed with the frames of slots,
// as far as the window of fl allows, until fl stops sending.
func sendLoop(fe *vhostuser.Frontend, q, sender int, slots []txSlot, fl *flow) error {
	dq := fe.Queues[2*q+1]
	free := make([]int, 0, len(slots))
	for i := range slots {
		free = append(free, i)
	}
	byHead := make([]int, ringSize)
	var done []vhostuser.Completion
	buf := make([]vhostuser.Buf, 1)
	for !fl.sendStopped() {
		done = dq.Reap(done[:0])
		for _, c := range done {
			free = append(free, byHead[c.Head])
		}
		n := min(int64(len(free)), fl.room())
		if n <= 0 {
			if len(free) == 0 {
				dq.Wait(20 * time.Millisecond)
			} else {
				fl.waitRoom(sender)
			}
			continue
		}
		for range n {
			s := free[len(free)-1]
			free = free[:len(free)-1]
			buf[0] = vhostuser.Buf{Addr: slots[s].gpa, Len: slots[s].n}
			head, err := dq.Add(buf)
			if err != nil {
				return err
			}
			byHead[head] = s
		}
		fl.sent.Add(n)
		dq.Kick()
	}
	return nil
}

// receiveLoop keeps receive queue 2q of fe stocked with bufs and checks
// every frame delivered against the template its payload names, until
// fl stops.
func receiveLoop(fe *vhostuser.Frontend, q int, bufs []rxBuf, frames [][]byte, fl *flow) error {
	dq := fe.Queues[2*q]
	byHead := make([]int, ringSize)
	one := make([]vhostuser.Buf, 1)
	post := func(k int) error {
		one[0] = vhostuser.Buf{Addr: bufs[k].gpa, Len: rxBufLen, Write: true}
		head, err := dq.Add(one)
		byHead[head] = k
		return err
	}
	for k := range bufs {
		if err := post(k); err != nil {
			return err
		}
	}
	dq.Kick()
	var done []vhostuser.Completion
	ks := make([]int, 0, len(bufs))
	for !fl.stopped() {
		dq.Wait(20 * time.Millisecond)
		done = dq.Reap(done[:0])
		if len(done) == 0 {
			continue
		}
		// Take every completion off the books before posting again: Reap
		// has already freed their descriptors.
		ks = ks[:0]
		for _, c := range done {
			k := byHead[c.Head]
			ks = append(ks, k)
			fl.check(checkCardFrame(bufs[k].b[:min(int(c.Written), rxBufLen)], frames))
		}
		for _, k := range ks {
			if err := post(k); err != nil {
				return err
			}
		}
		dq.Kick()
		fl.received(int64(len(done)))
	}
	return nil
}

// checkCardFrame checks one received buffer: a virtio-net header saying
// one buffer and no offloads, then exactly the frame its payload names.
func checkCardFrame(b []byte, frames [][]byte) error {
	var h packet.VnetHdr
	if err := h.Decode(b); err != nil {
		return err
	}
	if h.NumBuffers != 1 || h.Flags != 0 || h.GSOType != packet.GSONone {
		return fmt.Errorf("received header %+v", h)
	}
	f := b[packet.VnetHdrLen:]
	s := slotOf(f)
	if s < 0 || s >= len(frames) || string(f) != string(frames[s]) {
		return fmt.Errorf("a received frame of %d bytes is not the one sent (slot %d)", len(f), s)
	}
	return nil
}

// cardPingPong sends warm and then n ping frames of size bytes (IP) from
// A to B, one at a time; B's frontend answers each with a pong as soon as
// it sees it. It returns the round trips of the last n.
func cardPingPong(cp *cardPair, size, warm, n int) ([]time.Duration, error) {
	payload := make([]byte, size-28)
	rand.Read(payload)
	ping := cardFrame(ipA, ipB, macA, macB, 7000, 7001, payload)
	pong := cardFrame(ipB, ipA, macB, macA, 7001, 7000, payload)
	type end struct {
		txGPA    uint64
		txLen    uint32
		rxGPA    uint64
		rx       []byte
		tx, rxq  *vhostuser.DriverQueue
		expected []byte
	}
	mk := func(fe *vhostuser.Frontend, send, want []byte) (*end, error) {
		e := &end{tx: fe.Queues[1], rxq: fe.Queues[0], expected: want}
		gpa, b, err := fe.Alloc(packet.VnetHdrLen + len(send))
		if err != nil {
			return nil, err
		}
		copy(b[packet.VnetHdrLen:], send)
		e.txGPA, e.txLen = gpa, uint32(len(b))
		if e.rxGPA, e.rx, err = fe.Alloc(rxBufLen); err != nil {
			return nil, err
		}
		_, err = e.rxq.Add([]vhostuser.Buf{{Addr: e.rxGPA, Len: rxBufLen, Write: true}})
		e.rxq.Kick()
		return e, err
	}
	a, err := mk(cp.a.fe, ping, pong)
	if err != nil {
		return nil, err
	}
	b, err := mk(cp.b.fe, pong, ping)
	if err != nil {
		return nil, err
	}
	send := func(e *end) error {
		e.tx.Reap(nil)
		if _, err := e.tx.Add([]vhostuser.Buf{{Addr: e.txGPA, Len: e.txLen}}); err != nil {
			return err
		}
		e.tx.Kick()
		return nil
	}
	// await waits for the one frame e expects and posts its buffer again.
	await := func(e *end, timeout time.Duration) error {
		deadline := time.Now().Add(timeout)
		for {
			if done := e.rxq.Reap(nil); len(done) > 0 {
				got := e.rx[:min(int(done[0].Written), rxBufLen)]
				if len(got) < packet.VnetHdrLen || string(got[packet.VnetHdrLen:]) != string(e.expected) {
					return fmt.Errorf("ping-pong: an unexpected frame of %d bytes", len(got))
				}
				_, err := e.rxq.Add([]vhostuser.Buf{{Addr: e.rxGPA, Len: rxBufLen, Write: true}})
				e.rxq.Kick()
				return err
			}
			if time.Now().After(deadline) {
				return errLost
			}
			e.rxq.Wait(time.Until(deadline))
		}
	}
	stop := make(chan struct{})
	echoDone := make(chan struct{})
	var echoErr error
	go func() {
		defer close(echoDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := await(b, 100*time.Millisecond)
			if errors.Is(err, errLost) {
				continue
			}
			if err == nil {
				err = send(b)
			}
			if err != nil {
				echoErr = err
				return
			}
		}
	}()
	rtts := make([]time.Duration, 0, warm+n)
	err = func() error {
		for len(rtts) < warm+n {
			t0 := time.Now()
			if err := send(a); err != nil {
				return err
			}
			if err := await(a, time.Second); err != nil {
				select {
				case <-echoDone:
					return fmt.Errorf("echo: %v", echoErr)
				default:
				}
				return fmt.Errorf("ping %d: %w", len(rtts), err)
			}
			rtts = append(rtts, time.Since(t0))
		}
		return nil
	}()
	close(stop)
	<-echoDone
	if err != nil {
		return nil, err
	}
	return rtts[warm:], nil
}

var errLost = errors.New("lost")
