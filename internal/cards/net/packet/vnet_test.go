package packet

import (
	"errors"
	"testing"
)

func TestVnetHdrRoundTrip(t *testing.T) {
	h := VnetHdr{Flags: VnetFlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16, NumBuffers: 3}
	b := make([]byte, VnetHdrLen)
	h.Put(b)
	// Little-endian on the queue.
	want := []byte{1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 3, 0}
	if string(b) != string(want) {
		t.Fatalf("Put: % x, want % x", b, want)
	}
	var g VnetHdr
	if err := g.Decode(b); err != nil || g != h {
		t.Fatalf("Decode: %+v %v", g, err)
	}
	if err := g.Decode(b[:11]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short header: %v", err)
	}
}

// partial returns f (a TCP or UDP frame with a correct checksum) as a
// guest with VIRTIO_NET_F_CSUM sends it: the checksum field holding the
// folded pseudo-header sum, and the header that says so.
func partial(t *testing.T, f []byte) ([]byte, VnetHdr) {
	t.Helper()
	var p Packet
	if err := Parse(f, &p); err != nil {
		t.Fatal(err)
	}
	off, _ := checksumField(p.Proto)
	g := append([]byte(nil), f...)
	be.PutUint16(g[p.L4+off:], PseudoHeaderChecksum(p.Proto, p.SrcIP, p.DstIP, uint16(p.PayloadEnd-p.L4)))
	return g, VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: uint16(p.L4), CsumOffset: uint16(off)}
}

func TestFinish(t *testing.T) {
	for name, f := range map[string][]byte{
		"tcp":          frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK|TCPFlagPSH, []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, seq(1448))),
		"tcp odd":      frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK, nil, seq(7))),
		"udp":          frame(ipOpts{proto: ProtoUDP}, udpSeg(53, 33000, seq(512))),
		"ip options":   frame(ipOpts{proto: ProtoUDP, options: []byte{1, 1, 1, 0}}, udpSeg(53, 33000, seq(9))),
		"empty tcp":    frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK, nil, nil)),
		"udp 1 byte":   frame(ipOpts{proto: ProtoUDP}, udpSeg(1, 2, []byte{0xff})),
		"udp 0 bytes":  frame(ipOpts{proto: ProtoUDP}, udpSeg(0xffff, 0xffff, nil)),
		"big tcp":      frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK, nil, seq(9000))),
		"udp all ones": frame(ipOpts{proto: ProtoUDP}, udpSeg(0xffff, 0xffff, []byte{0xff, 0xff, 0xff, 0xff})),
	} {
		t.Run(name, func(t *testing.T) {
			g, h := partial(t, f)
			if err := Finish(g, &h); err != nil {
				t.Fatal(err)
			}
			if h.Flags&VnetFlagNeedsCsum != 0 {
				t.Fatal("NEEDS_CSUM still set")
			}
			var p Packet
			if err := Parse(g, &p); err != nil {
				t.Fatal(err)
			}
			if err := VerifyTransport(g, &p); err != nil {
				t.Fatal(err)
			}
			off, _ := checksumField(p.Proto)
			if got, want := be.Uint16(g[p.L4+off:]), be.Uint16(f[p.L4+off:]); got != want && !(want == 0 && got == 0xffff) {
				t.Fatalf("checksum %#04x, reference %#04x", got, want)
			}
		})
	}

	f := frame(ipOpts{proto: ProtoUDP}, udpSeg(1, 2, seq(4)))
	for _, h := range []VnetHdr{
		{Flags: VnetFlagNeedsCsum, CsumStart: uint16(len(f) - 1), CsumOffset: 0},
		{Flags: VnetFlagNeedsCsum, CsumStart: 34, CsumOffset: uint16(len(f) - 34 - 1)},
		{Flags: VnetFlagNeedsCsum, CsumStart: 0xffff, CsumOffset: 0xffff},
	} {
		g := append([]byte(nil), f...)
		if err := Finish(g, &h); !errors.Is(err, ErrBadVnetHdr) || string(g) != string(f) {
			t.Errorf("%+v: %v", h, err)
		}
	}
	// Positions that point into the frame are the sender's business.
	h := VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: uint16(len(f) - 2), CsumOffset: 0}
	if err := Finish(append([]byte(nil), f...), &h); err != nil {
		t.Errorf("last two bytes: %v", err)
	}
	// Without the flag nothing happens.
	h = VnetHdr{CsumStart: 0xffff}
	g := append([]byte(nil), f...)
	if err := Finish(g, &h); err != nil || string(g) != string(f) {
		t.Errorf("no flag: %v", err)
	}
}

// gsoFrame returns a TCP frame with payload n bytes long as a guest hands
// it over with TSO: partial checksum, GSO header for mss.
func gsoFrame(t *testing.T, o ipOpts, flags byte, options []byte, n, mss int) ([]byte, VnetHdr) {
	t.Helper()
	o.proto = ProtoTCP
	f := frame(o, tcpSeg(40000, 80, 0xfffff000, 77, flags, options, seq(n)))
	g, h := partial(t, f)
	h.GSOType = GSOTCPv4
	h.GSOSize = uint16(mss)
	h.HdrLen = uint16(14 + 20 + len(o.options) + 20 + len(options))
	return g, h
}

type segResult struct {
	frames [][]byte
	pkts   []Packet
}

func segmentAll(t *testing.T, f []byte, h *VnetHdr, bufLen int) (segResult, error) {
	t.Helper()
	var r segResult
	buf := make([]byte, bufLen)
	err := Segment(f, h, buf, func(seg []byte) error {
		if &seg[0] != &buf[0] {
			t.Fatal("segment not at the start of buf")
		}
		c := append([]byte(nil), seg...)
		var p Packet
		if err := Parse(c, &p); err != nil {
			t.Fatalf("segment %d: %v", len(r.frames), err)
		}
		if err := VerifyTransport(c, &p); err != nil {
			t.Fatalf("segment %d: %v", len(r.frames), err)
		}
		r.frames = append(r.frames, c)
		r.pkts = append(r.pkts, p)
		return nil
	})
	return r, err
}

func TestSegment(t *testing.T) {
	all := byte(TCPFlagACK | TCPFlagPSH | TCPFlagFIN | TCPFlagCWR | TCPFlagURG)
	tsOpt := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}
	cases := []struct {
		name    string
		o       ipOpts
		flags   byte
		options []byte
		n, mss  int
		want    []int // payload lengths
	}{
		{name: "three segments, last short", o: ipOpts{id: 0xfffe, frag: 0x4000}, flags: all, options: tsOpt, n: 3000, mss: 1448, want: []int{1448, 1448, 104}},
		{name: "exact multiple", flags: TCPFlagACK | TCPFlagPSH, n: 4000, mss: 1000, want: []int{1000, 1000, 1000, 1000}},
		{name: "fits in one", flags: all, n: 500, mss: 1448, want: []int{500}},
		{name: "no payload", flags: TCPFlagACK | TCPFlagFIN, n: 0, mss: 1448, want: []int{0}},
		{name: "ip options and padding", o: ipOpts{options: []byte{1, 1, 1, 0}, pad: 6}, flags: TCPFlagACK, n: 100, mss: 48, want: []int{48, 48, 4}},
		{name: "64 KiB", flags: TCPFlagACK, n: 65535 - 40, mss: 9000, want: []int{9000, 9000, 9000, 9000, 9000, 9000, 9000, 2495}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, h := gsoFrame(t, c.o, c.flags, c.options, c.n, c.mss)
			var orig Packet
			if err := Parse(f, &orig); err != nil {
				t.Fatal(err)
			}
			r, err := segmentAll(t, f, &h, orig.Payload+c.mss)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.frames) != len(c.want) {
				t.Fatalf("%d segments, want %d", len(r.frames), len(c.want))
			}
			var payload []byte
			seqNo := orig.Seq
			for i, p := range r.pkts {
				last := i == len(r.pkts)-1
				if n := p.End - p.Payload; n != c.want[i] {
					t.Errorf("segment %d: %d bytes, want %d", i, n, c.want[i])
				}
				if len(r.frames[i]) != p.End {
					t.Errorf("segment %d: %d bytes after the datagram", i, len(r.frames[i])-p.End)
				}
				if p.ID != orig.ID+uint16(i) {
					t.Errorf("segment %d: id %d, want %d", i, p.ID, orig.ID+uint16(i))
				}
				if p.Seq != seqNo {
					t.Errorf("segment %d: seq %d, want %d", i, p.Seq, seqNo)
				}
				wantFlags := c.flags
				if i > 0 {
					wantFlags &^= TCPFlagCWR
				}
				if !last {
					wantFlags &^= TCPFlagFIN | TCPFlagPSH
				}
				if p.TCPFlags != wantFlags {
					t.Errorf("segment %d: flags %#02x, want %#02x", i, p.TCPFlags, wantFlags)
				}
				if p.Ack != orig.Ack || p.SrcPort != orig.SrcPort || p.DstPort != orig.DstPort || p.TTL != orig.TTL || p.DontFragment != orig.DontFragment || p.Window != orig.Window {
					t.Errorf("segment %d: copied fields differ: %+v", i, p)
				}
				// Headers with their options, except the fields that change.
				hdr := r.frames[i][:orig.Payload]
				if string(hdr[orig.L4+20:]) != string(f[orig.L4+20:orig.Payload]) || string(hdr[:orig.L3+2]) != string(f[:orig.L3+2]) {
					t.Errorf("segment %d: options or Ethernet header differ", i)
				}
				payload = append(payload, p.TransportPayload(r.frames[i])...)
				seqNo += uint32(c.want[i])
			}
			if string(payload) != string(f[orig.Payload:orig.End]) {
				t.Fatal("segments' payloads do not add up to the original")
			}
		})
	}
}

func TestSegmentRefuses(t *testing.T) {
	good, gh := gsoFrame(t, ipOpts{}, TCPFlagACK, nil, 3000, 1000)
	udp := frame(ipOpts{proto: ProtoUDP}, udpSeg(1, 2, seq(3000)))
	frag := frame(ipOpts{proto: ProtoTCP, frag: 0x2000}, tcpSeg(1, 2, 3, 4, TCPFlagACK, nil, seq(3000)))
	with := func(f func(h *VnetHdr)) *VnetHdr { h := gh; f(&h); return &h }
	errStop := errors.New("stop")
	cases := []struct {
		name  string
		frame []byte
		h     *VnetHdr
		buf   int
		emit  error
		err   error
		calls int
	}{
		{name: "ecn", frame: good, h: with(func(h *VnetHdr) { h.GSOType |= GSOECN }), err: ErrUnsupported},
		{name: "tcpv6", frame: good, h: with(func(h *VnetHdr) { h.GSOType = GSOTCPv6 }), err: ErrUnsupported},
		{name: "udp", frame: good, h: with(func(h *VnetHdr) { h.GSOType = GSOUDP }), err: ErrUnsupported},
		{name: "udp l4", frame: good, h: with(func(h *VnetHdr) { h.GSOType = GSOUDPL4 }), err: ErrUnsupported},
		{name: "none", frame: good, h: with(func(h *VnetHdr) { h.GSOType = GSONone }), err: ErrUnsupported},
		{name: "mss 0", frame: good, h: with(func(h *VnetHdr) { h.GSOSize = 0 }), err: ErrBadVnetHdr},
		{name: "mss 47", frame: good, h: with(func(h *VnetHdr) { h.GSOSize = 47 }), err: ErrBadVnetHdr},
		{name: "udp frame", frame: udp, h: &gh, err: ErrBadVnetHdr},
		{name: "fragment", frame: frag, h: &gh, err: ErrBadVnetHdr},
		{name: "bad ip checksum", frame: set(good, 24, good[24]^1), h: &gh, err: ErrBadChecksum},
		{name: "truncated", frame: good[:100], h: &gh, err: ErrTruncated},
		{name: "buffer short by one", frame: good, h: &gh, buf: 54 + 1000 - 1, err: ErrShortBuffer},
		{name: "emit error stops", frame: good, h: &gh, emit: errStop, err: errStop, calls: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := c.buf
			if n == 0 {
				n = 2048
			}
			calls := 0
			err := Segment(c.frame, c.h, make([]byte, n), func([]byte) error { calls++; return c.emit })
			if !errors.Is(err, c.err) || calls != c.calls {
				t.Fatalf("err %v after %d segments, want %v after %d", err, calls, c.err, c.calls)
			}
		})
	}
}

func TestSegmentDoesNotAllocate(t *testing.T) {
	f, h := gsoFrame(t, ipOpts{}, TCPFlagACK|TCPFlagPSH, nil, 60000, 1448)
	buf := make([]byte, 2048)
	total := 0
	emit := func(seg []byte) error { total += len(seg); return nil }
	if a := testing.AllocsPerRun(100, func() {
		if err := Segment(f, &h, buf, emit); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("%v allocations per Segment", a)
	}
}
