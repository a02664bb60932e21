package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// The peer: two wireguard-go processes, each in a network namespace the
// bench makes, each with its TUN device there; their UDP underlay is a
// veth pair between the namespaces. A socket in the first namespace sends
// UDP datagrams to one in the second through the tunnel:
//
//	ns 1: socket 10.214.0.1 ─► wg TUN ─► wireguard-go ─► veth 10.213.0.1
//	                                                         │ (UDP, MTU 9000)
//	ns 2: socket 10.214.0.2 ◄─ wg TUN ◄─ wireguard-go ◄─ veth 10.213.0.2
var (
	wgInner    = [2]netip.Addr{netip.MustParseAddr("10.214.0.1"), netip.MustParseAddr("10.214.0.2")}
	wgUnderlay = [2]string{"10.213.0.1", "10.213.0.2"}
)

const (
	wgTUN  = "azbwg"
	wgPort = 51820
)

type wgPair struct {
	ns    [2]string
	cmds  [2]*exec.Cmd
	stdin [2]io.WriteCloser
}

func (w *wgPair) pids() []int { return []int{w.cmds[0].Process.Pid, w.cmds[1].Process.Pid} }

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// wgKeys makes a Curve25519 key pair as wg genkey does.
func wgKeys() (priv, pub [32]byte) {
	rand.Read(priv[:])
	priv[0] &= 248
	priv[31] = (priv[31] & 127) | 64
	p, _ := curve25519.X25519(priv[:], curve25519.Basepoint)
	copy(pub[:], p)
	return priv, pub
}

// startWG makes the namespaces and starts one wireguard-go in each (this
// program again, as `wg-child`), with a TUN MTU of mtu.
func startWG(exe string, mtu int) (w *wgPair, err error) {
	w = &wgPair{}
	for i := range w.ns {
		w.ns[i] = fmt.Sprintf("azb%d-%d", os.Getpid(), i+1)
	}
	defer func() {
		if err != nil {
			w.stop()
		}
	}()
	for _, ns := range w.ns {
		if err := ip("netns", "add", ns); err != nil {
			return w, err
		}
		if err := ip("-n", ns, "link", "set", "lo", "up"); err != nil {
			return w, err
		}
	}
	if err := ip("netns", "exec", w.ns[0], "ip", "link", "add", "azbu1", "type", "veth", "peer", "name", "azbu2", "netns", w.ns[1]); err != nil {
		return w, err
	}
	for i, ns := range w.ns {
		dev := "azbu" + strconv.Itoa(i+1)
		if err := ip("-n", ns, "addr", "add", wgUnderlay[i]+"/24", "dev", dev); err != nil {
			return w, err
		}
		if err := ip("-n", ns, "link", "set", dev, "mtu", "9000", "up"); err != nil {
			return w, err
		}
	}
	var priv, pub [2][32]byte
	for i := range priv {
		priv[i], pub[i] = wgKeys()
	}
	for i, ns := range w.ns {
		o := 1 - i
		conf := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nendpoint=%s:%d\nallowed_ip=%s/32\n\n",
			hex.EncodeToString(priv[i][:]), wgPort, hex.EncodeToString(pub[o][:]), wgUnderlay[o], wgPort, wgInner[o])
		cmd := exec.Command("ip", "netns", "exec", ns, exe, "wg-child", wgTUN, strconv.Itoa(mtu))
		in, err := cmd.StdinPipe()
		if err != nil {
			return w, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return w, err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return w, err
		}
		w.cmds[i], w.stdin[i] = cmd, in
		io.WriteString(in, conf)
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			return w, fmt.Errorf("wireguard-go in %s: %q, %v", ns, line, err)
		}
		if err := ip("-n", ns, "addr", "add", wgInner[i].String()+"/24", "dev", wgTUN); err != nil {
			return w, err
		}
		// The TUN's queue (txqueuelen, 500 by default) holds more than
		// the bench keeps in flight, as a card's rings do: the kernel
		// drops what overflows it, where a guest's ring makes it wait.
		if err := ip("-n", ns, "link", "set", wgTUN, "txqueuelen", "4096", "up"); err != nil {
			return w, err
		}
	}
	return w, nil
}

// stop ends both wireguard-go processes and deletes the namespaces (and
// with them the veth pair and the TUN devices).
func (w *wgPair) stop() {
	for i, c := range w.cmds {
		if c == nil {
			continue
		}
		w.stdin[i].Close() // the child closes its device and exits
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			c.Process.Kill()
			<-done
		}
	}
	for _, ns := range w.ns {
		if ns != "" {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
}

// wgChild is `net wg-child NAME MTU`, run inside its namespace: it
// creates TUN device NAME, reads its wireguard-go configuration (UAPI
// text, ended by an empty line) from stdin, brings the device up, says
// "ready", and closes it when stdin closes.
func wgChild(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "wg-child NAME MTU")
		return 2
	}
	mtu, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "wg-child:", err)
		return 2
	}
	in := bufio.NewReader(os.Stdin)
	var conf strings.Builder
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, "wg-child: reading the configuration:", err)
			return 1
		}
		if line == "\n" {
			break
		}
		conf.WriteString(line)
	}
	t, err := tun.CreateTUN(args[0], mtu)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wg-child:", err)
		return 1
	}
	dev := device.NewDevice(t, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "wireguard-go: "))
	if err := dev.IpcSet(conf.String()); err != nil {
		fmt.Fprintln(os.Stderr, "wg-child:", err)
		return 1
	}
	if err := dev.Up(); err != nil {
		fmt.Fprintln(os.Stderr, "wg-child:", err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, in)
	dev.Close()
	return 0
}

// udpIn opens a UDP socket in namespace ns bound to local and, when
// remote is valid, connected to it. The socket stays in that namespace
// whatever thread later uses it.
func udpIn(ns string, local, remote netip.AddrPort) (*net.UDPConn, error) {
	fd, err := socketIn(ns)
	if err != nil {
		return nil, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.Addr().As4(), Port: int(local.Port())}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if remote.IsValid() {
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: remote.Addr().As4(), Port: int(remote.Port())}); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	f := os.NewFile(uintptr(fd), "udp")
	defer f.Close()
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// socketIn makes a UDP socket in namespace ns, on a thread of its own
// that enters the namespace and is never used again (a goroutine that
// ends locked to its thread takes the thread with it).
func socketIn(ns string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends here
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{-1, err}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("entering %s: %w", ns, err)}
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// wgBatch is how many datagrams one sendmmsg or recvmmsg moves.
const wgBatch = 64

// wgFlows opens, for each flow, a sender in namespace 1 and a receiver in
// namespace 2 and drives them like the card's queue pairs: the same
// payloads, the same window.
func wgFlows(w *wgPair, flows int, pays [][]byte, fl *flow) (func() error, error) {
	var snd, rcv []*net.UDPConn
	closeAll := func() {
		for _, c := range append(snd, rcv...) {
			c.Close()
		}
	}
	for f := range flows {
		dst := netip.AddrPortFrom(wgInner[1], uint16(6000+f))
		r, err := udpIn(w.ns[1], dst, netip.AddrPort{})
		if err != nil {
			closeAll()
			return nil, err
		}
		rcv = append(rcv, r)
		s, err := udpIn(w.ns[0], netip.AddrPortFrom(wgInner[0], uint16(5000+f)), dst)
		if err != nil {
			closeAll()
			return nil, err
		}
		snd = append(snd, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2*flows)
	per := len(pays) / flows
	for f := range flows {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs[2*f] = wgSend(snd[f], f, pays[f*per:(f+1)*per], fl)
		}()
		go func() {
			defer wg.Done()
			errs[2*f+1] = wgReceive(rcv[f], pays, fl)
		}()
	}
	return func() error {
		wg.Wait()
		closeAll()
		return errors.Join(errs...)
	}, nil
}

func wgSend(c *net.UDPConn, sender int, pays [][]byte, fl *flow) error {
	pc := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, wgBatch)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	next := 0
	for !fl.sendStopped() {
		n := min(fl.room(), wgBatch)
		if n <= 0 {
			fl.waitRoom(sender)
			continue
		}
		for k := range n {
			msgs[k].Buffers[0] = pays[next]
			next = (next + 1) % len(pays)
		}
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		sent, err := pc.WriteBatch(msgs[:n], 0)
		fl.sent.Add(int64(max(sent, 0)))
		// ECONNREFUSED: the ICMP port unreachable of a datagram that
		// reached the previous cell's receiver after it closed.
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.ECONNREFUSED) {
			return err
		}
	}
	return nil
}

func wgReceive(c *net.UDPConn, pays [][]byte, fl *flow) error {
	pc := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, wgBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	for !fl.stopped() {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, err := pc.ReadBatch(msgs, 0)
		n = max(n, 0)
		for _, m := range msgs[:n] {
			fl.check(checkPayload(m.Buffers[0][:m.N], pays))
		}
		if n > 0 {
			fl.received(int64(n))
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	return nil
}

func checkPayload(p []byte, pays [][]byte) error {
	if len(p) < 4 {
		return fmt.Errorf("a datagram of %d bytes", len(p))
	}
	s := int(p[0])<<24 | int(p[1])<<16 | int(p[2])<<8 | int(p[3])
	if s >= len(pays) || string(p) != string(pays[s]) {
		return fmt.Errorf("a received datagram of %d bytes is not the one sent (slot %d)", len(p), s)
	}
	return nil
}

// wgPingPong sends warm and then n datagrams of size bytes (IP) from
// namespace 1 to 2, one at a time; a goroutine in this process answers
// each from 2. It returns the round trips of the last n.
func wgPingPong(w *wgPair, size, warm, n int) ([]time.Duration, error) {
	a := netip.AddrPortFrom(wgInner[0], 7000)
	b := netip.AddrPortFrom(wgInner[1], 7001)
	cb, err := udpIn(w.ns[1], b, a)
	if err != nil {
		return nil, err
	}
	ca, err := udpIn(w.ns[0], a, b)
	if err != nil {
		cb.Close()
		return nil, err
	}
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		buf := make([]byte, 65536)
		for {
			k, err := cb.Read(buf)
			if err != nil {
				return
			}
			cb.Write(buf[:k])
		}
	}()
	defer func() { ca.Close(); cb.Close(); <-echoDone }()
	payload := make([]byte, size-28)
	rand.Read(payload)
	buf := make([]byte, 65536)
	rtts := make([]time.Duration, 0, warm+n)
	for len(rtts) < warm+n {
		t0 := time.Now()
		if _, err := ca.Write(payload); err != nil {
			return nil, err
		}
		ca.SetReadDeadline(t0.Add(time.Second))
		k, err := ca.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("ping %d: %w", len(rtts), err)
		}
		if string(buf[:k]) != string(payload) {
			return nil, fmt.Errorf("ping %d: an unexpected answer of %d bytes", len(rtts), k)
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts[warm:], nil
}

// wgReady waits until a datagram crosses the tunnel (the first one
// starts the handshake).
func wgReady(w *wgPair) error {
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if _, err = wgPingPong(w, 64, 0, 1); err == nil {
			return nil
		}
	}
	return fmt.Errorf("wireguard-go: no datagram crossed the tunnel: %w", err)
}
