package imds

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/cards/net/packet"
)

// Bounds and timers of the TCP responder.
const (
	// MaxConns bounds the connections of one interface: a guest that
	// opens more is refused (RST) until some close.
	MaxConns = 64
	// ourMSS is the MSS the service announces: the guest's requests are
	// small, and a guest with a smaller MTU segments by it anyway.
	ourMSS = 1460
	// minMSS is the least MSS taken from a guest: below it a 16 KiB
	// answer would be thousands of frames.
	minMSS = 64
	// defaultMSS is RFC 9293's, for a SYN without the option.
	defaultMSS = 536
	// maxIn bounds what waits of a guest's requests: one whole request
	// at the most (the window announced is what is left of it).
	maxIn = MaxHeader + MaxBody
	// outRoom is how much unacknowledged answer a connection may hold
	// before the next pipelined request waits (one answer more may go
	// over it).
	outRoom = 32 << 10
	// initialRTO, maxRetries: a segment unacknowledged is sent again
	// after initialRTO, doubling, and the connection reset after
	// maxRetries (about 25 s). The guest is on the same host: its ACK is
	// late only when its receive ring was full.
	initialRTO = 200 * time.Millisecond
	maxRetries = 7
	// idleTimeout closes (RST) a connection the guest left silent with
	// nothing in flight, as a keep-alive client's idle pool expects.
	idleTimeout = 60 * time.Second
	// tick is how often timers are looked at while a connection is
	// open; no timer runs while none is.
	tick = 50 * time.Millisecond
)

type state uint8

const (
	synReceived state = iota
	established
)

// endpoint is the guest's end of a connection, and our MAC to it.
type endpoint struct {
	guestMAC, ourMAC packet.MAC
	guestIP          netip.Addr
	guestPort        uint16
}

type connKey struct {
	ip   [4]byte
	port uint16
}

// conn is one connection. Sequence numbers: sndUna is the first byte the
// guest has not acknowledged, out holds the answer bytes from there on;
// sndNxt-sndUna of them (and the FIN, once finSent) are in flight.
type conn struct {
	endpoint
	state          state
	iss            uint32
	sndUna, sndNxt uint32
	rcvNxt         uint32
	mss            int
	wnd            int // the guest's window, unscaled: no scaling was agreed
	in, out        []byte
	peerFin        bool // the guest's FIN arrived, in order
	finQueued      bool // our FIN goes after the answers in out
	finSent        bool // … and is in flight
	finAcked       bool
	rto            time.Duration
	rtoAt          time.Time // zero when nothing is in flight
	retries        int
	lastSeen       time.Time
}

// Stack is the TCP responder of one interface: it takes the guest's
// segments for Addr:Port and gives the answers to emit, one frame at a
// time. Its state is under one lock: a guest's transmit queues may call
// it at once, and the timer.
type Stack struct {
	svc  *Service
	emit func(frame []byte)
	now  func() time.Time

	mu     sync.Mutex
	conns  map[connKey]*conn
	timer  *time.Timer // set while a connection is open
	closed bool

	unavailable, dropped, refused, resets, retransmits atomic.Uint64
}

// NewStack makes the responder of svc; emit gives a frame to the guest
// (it keeps the slice).
func NewStack(svc *Service, emit func(frame []byte)) *Stack {
	return &Stack{svc: svc, emit: emit, now: time.Now, conns: map[connKey]*conn{}}
}

// Close stops the timer; segments after it are dropped.
func (s *Stack) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	clear(s.conns)
}

// Serves reports whether the service has metadata to answer with: the
// switch answers ARP for Addr only then.
func (s *Stack) Serves() bool { return s.svc.Data() != nil }

// StackCounts are the responder's counters.
type StackCounts struct {
	Unavailable uint64 // frames dropped: no metadata (the interface has no instance)
	Dropped     uint64 // frames dropped: not TCP to port 80, a fragment, a bad checksum
	Refused     uint64 // connections refused: MaxConns open
	Resets      uint64 // RSTs sent
	Retransmits uint64 // timeouts that sent segments again
	Conns       uint64 // connections open (a gauge)
}

// Counts returns the responder's counters.
func (s *Stack) Counts() StackCounts {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return StackCounts{Unavailable: s.unavailable.Load(), Dropped: s.dropped.Load(), Refused: s.refused.Load(),
		Resets: s.resets.Load(), Retransmits: s.retransmits.Load(), Conns: uint64(n)}
}

// inSeg is one segment from the guest.
type inSeg struct {
	seq, ack uint32
	flags    uint8
	window   uint16
	mss      uint16
	payload  []byte
}

// FromGuest takes one frame the switch found to be for Addr: an IPv4
// frame from the guest's own MAC and address, to the gateway's MAC,
// parsed into p with its checksums complete (the device finished any the
// guest left to it).
func (s *Stack) FromGuest(p *packet.Packet, frame []byte) {
	d := s.svc.Data()
	if d == nil {
		s.unavailable.Add(1)
		return
	}
	if p.Proto != packet.ProtoTCP || !p.HasTransport || p.Fragment || p.DstIP != Addr {
		s.dropped.Add(1)
		return
	}
	if packet.VerifyTransport(frame, p) != nil {
		s.dropped.Add(1)
		return
	}
	in := inSeg{seq: p.Seq, ack: p.Ack, flags: p.TCPFlags, window: p.Window, payload: frame[p.Payload:p.End]}
	if in.flags&packet.TCPFlagSYN != 0 {
		in.mss = mssOption(frame[p.L4+packet.TCPMinHeaderLen : p.Payload])
	}
	ep := endpoint{guestMAC: p.Src, ourMAC: p.Dst, guestIP: p.SrcIP, guestPort: p.SrcPort}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if p.DstPort != Port {
		s.resetLocked(d, &ep, &in)
		return
	}
	s.segmentLocked(d, &ep, &in, s.now())
}

func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqGT(a, b uint32) bool { return int32(a-b) > 0 }

// segmentLocked is RFC 9293's SEGMENT ARRIVES for a server that only
// listens, answers and closes: no simultaneous open, out-of-order
// segments dropped (the guest sends them again), no urgent data.
func (s *Stack) segmentLocked(d *Data, ep *endpoint, in *inSeg, now time.Time) {
	k := connKey{ip: ep.guestIP.As4(), port: ep.guestPort}
	c := s.conns[k]
	syn, ack, rst, fin := in.flags&packet.TCPFlagSYN != 0, in.flags&packet.TCPFlagACK != 0,
		in.flags&packet.TCPFlagRST != 0, in.flags&packet.TCPFlagFIN != 0
	if c == nil {
		switch {
		case rst:
		case syn && !ack:
			if len(s.conns) >= MaxConns {
				s.refused.Add(1)
				s.resetLocked(d, ep, in)
				return
			}
			s.acceptLocked(d, k, ep, in, now)
		default:
			s.resetLocked(d, ep, in)
		}
		return
	}
	c.lastSeen = now
	if rst {
		// Only an exact RST closes (RFC 5961 §3.2); one merely in
		// the window is ignored rather than challenged.
		if in.seq == c.rcvNxt {
			delete(s.conns, k)
		}
		return
	}
	if syn {
		if c.state == synReceived && in.seq+1 == c.rcvNxt && !ack {
			s.sendLocked(d, c, &seg{seq: c.iss, ack: c.rcvNxt, flags: packet.TCPFlagSYN | packet.TCPFlagACK, window: c.window(), mss: ourMSS})
			return
		}
		s.ackLocked(d, c) // RFC 5961 §4: a challenge ACK
		return
	}
	if !ack {
		return
	}
	if seqGT(in.ack, c.sndNxt) {
		s.ackLocked(d, c) // acknowledges what was never sent
		return
	}
	if c.state == synReceived {
		if in.ack != c.iss+1 {
			s.resetLocked(d, ep, in)
			return
		}
		c.state = established
		c.sndUna = in.ack
		c.retries, c.rto, c.rtoAt = 0, initialRTO, time.Time{}
	} else if seqGT(in.ack, c.sndUna) {
		// An older ACK (reordered) acknowledges nothing new; its data
		// still counts.
		n := int(in.ack - c.sndUna)
		data := min(n, len(c.out))
		c.out = append(c.out[:0], c.out[data:]...)
		if n > data {
			c.finAcked = true
		}
		c.sndUna = in.ack
		c.retries, c.rto = 0, initialRTO
		c.rtoAt = time.Time{}
		if c.sndUna != c.sndNxt {
			c.rtoAt = now.Add(c.rto)
		}
	}
	c.wnd = int(in.window)

	mustAck := false
	if len(in.payload) > 0 || fin {
		mustAck = true
		s.receiveLocked(c, in)
	}
	s.answerLocked(d, c, now)
	if !s.pushLocked(d, c, now) && mustAck {
		s.ackLocked(d, c)
	}
	if c.finAcked && c.peerFin {
		delete(s.conns, k)
	}
}

// acceptLocked answers a SYN with a SYN/ACK and opens the connection.
func (s *Stack) acceptLocked(d *Data, k connKey, ep *endpoint, in *inSeg, now time.Time) {
	var r [4]byte
	rand.Read(r[:])
	iss := binary.BigEndian.Uint32(r[:])
	mss := int(in.mss)
	if mss == 0 {
		mss = defaultMSS
	}
	c := &conn{endpoint: *ep, iss: iss, sndUna: iss, sndNxt: iss + 1, rcvNxt: in.seq + 1,
		mss: max(minMSS, min(mss, ourMSS)), wnd: int(in.window), rto: initialRTO, lastSeen: now}
	c.rtoAt = now.Add(c.rto)
	s.conns[k] = c
	s.sendLocked(d, c, &seg{seq: iss, ack: c.rcvNxt, flags: packet.TCPFlagSYN | packet.TCPFlagACK, window: c.window(), mss: ourMSS})
	if s.timer == nil {
		s.timer = time.AfterFunc(tick, s.onTimer)
	}
}

// receiveLocked takes the in-order part of a segment's data and its FIN.
func (s *Stack) receiveLocked(c *conn, in *inSeg) {
	if c.peerFin {
		return
	}
	data := in.payload
	seq := in.seq
	if seqLT(seq, c.rcvNxt) {
		// A retransmission that overlaps what was taken: keep the rest.
		skip := c.rcvNxt - seq
		if uint32(len(data)) < skip {
			return
		}
		data, seq = data[skip:], c.rcvNxt
	}
	if seq != c.rcvNxt {
		return // out of order: dropped, the guest sends it again
	}
	take := min(len(data), maxIn-len(c.in))
	c.in = append(c.in, data[:take]...)
	c.rcvNxt += uint32(take)
	if in.flags&packet.TCPFlagFIN != 0 && take == len(data) {
		c.rcvNxt++
		c.peerFin = true
	}
}

// answerLocked answers the whole requests waiting, while the answers in
// flight leave room, and closes when a request or the guest says so.
func (s *Stack) answerLocked(d *Data, c *conn, now time.Time) {
	for !c.finQueued && len(c.out) <= outRoom && c.state == established {
		req, n, err := ParseRequest(c.in)
		if err == ErrIncomplete {
			if c.peerFin || len(c.in) >= maxIn {
				c.finQueued = true
				c.in = c.in[:0]
			}
			return
		}
		var resp Response
		closing := false
		if err != nil {
			resp, closing = s.svc.Malformed(), true
			c.in = c.in[:0]
		} else {
			resp, closing = s.svc.Serve(d, &req), req.Close
			c.in = append(c.in[:0], c.in[n:]...)
		}
		c.out = AppendResponse(c.out, &resp, closing, now)
		if closing {
			c.finQueued = true
			c.in = c.in[:0]
		}
	}
}

// pushLocked sends what the guest's window takes of the answers not yet
// sent, then the FIN when it is queued and everything before it went.
func (s *Stack) pushLocked(d *Data, c *conn, now time.Time) bool {
	if c.state != established || c.finSent {
		return false
	}
	sent := false
	for {
		off := int(c.sndNxt - c.sndUna)
		if off < len(c.out) {
			n := min(c.mss, len(c.out)-off, c.wnd-off)
			if n <= 0 {
				break // the window is full; the guest's next ACK opens it
			}
			flags := uint8(packet.TCPFlagACK)
			if off+n == len(c.out) {
				flags |= packet.TCPFlagPSH
			}
			s.sendLocked(d, c, &seg{seq: c.sndNxt, ack: c.rcvNxt, flags: flags, window: c.window(), payload: c.out[off : off+n]})
			c.sndNxt += uint32(n)
			sent = true
			continue
		}
		if c.finQueued {
			s.sendLocked(d, c, &seg{seq: c.sndNxt, ack: c.rcvNxt, flags: packet.TCPFlagFIN | packet.TCPFlagACK, window: c.window()})
			c.sndNxt++
			c.finSent = true
			sent = true
		}
		break
	}
	// Something in flight, or waiting for a window the guest closed
	// (the timer probes it): the timer runs.
	waiting := int(c.sndNxt-c.sndUna) < len(c.out) || (c.finQueued && !c.finSent)
	if (sent || waiting) && c.rtoAt.IsZero() {
		c.rtoAt = now.Add(c.rto)
	}
	return sent
}

// window is what the connection announces: the room left for requests.
func (c *conn) window() uint16 { return uint16(min(maxIn-len(c.in), 0xffff)) }

func (s *Stack) ackLocked(d *Data, c *conn) {
	s.sendLocked(d, c, &seg{seq: c.sndNxt, ack: c.rcvNxt, flags: packet.TCPFlagACK, window: c.window()})
}

// resetLocked answers a segment no connection takes (RFC 9293 §3.10.7.1).
func (s *Stack) resetLocked(d *Data, ep *endpoint, in *inSeg) {
	if in.flags&packet.TCPFlagRST != 0 {
		return
	}
	c := conn{endpoint: *ep}
	r := seg{flags: packet.TCPFlagRST}
	if in.flags&packet.TCPFlagACK != 0 {
		r.seq = in.ack
	} else {
		r.flags |= packet.TCPFlagACK
		r.ack = in.seq + uint32(len(in.payload))
		if in.flags&packet.TCPFlagSYN != 0 {
			r.ack++
		}
		if in.flags&packet.TCPFlagFIN != 0 {
			r.ack++
		}
	}
	s.resets.Add(1)
	s.sendLocked(d, &c, &r)
}

func (s *Stack) sendLocked(d *Data, c *conn, sg *seg) {
	s.emit(appendFrame(make([]byte, 0, packet.EthernetHeaderLen+packet.IPv4MinHeaderLen+packet.TCPMinHeaderLen+4+len(sg.payload)), &c.endpoint, d.TTL, sg))
}

func (s *Stack) onTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.tickLocked(s.now())
	if len(s.conns) > 0 {
		s.timer.Reset(tick)
	} else {
		s.timer = nil
	}
}

// tickLocked sends again what timed out, and closes the connections that
// gave up or idled.
func (s *Stack) tickLocked(now time.Time) {
	d := s.svc.Data()
	for k, c := range s.conns {
		if d == nil {
			delete(s.conns, k) // the metadata was withdrawn
			continue
		}
		if !c.rtoAt.IsZero() && !now.Before(c.rtoAt) {
			if c.retries >= maxRetries {
				s.abortLocked(d, k, c)
				continue
			}
			c.retries++
			c.rto *= 2
			c.rtoAt = now.Add(c.rto)
			s.retransmits.Add(1)
			if c.state == synReceived {
				s.sendLocked(d, c, &seg{seq: c.iss, ack: c.rcvNxt, flags: packet.TCPFlagSYN | packet.TCPFlagACK, window: c.window(), mss: ourMSS})
				continue
			}
			// Go back: everything unacknowledged goes again.
			c.sndNxt, c.finSent = c.sndUna, false
			if !s.pushLocked(d, c, now) {
				// A zero window: probe it with an ACK.
				s.ackLocked(d, c)
			}
			continue
		}
		if c.rtoAt.IsZero() && now.Sub(c.lastSeen) >= idleTimeout {
			s.abortLocked(d, k, c)
		}
	}
}

func (s *Stack) abortLocked(d *Data, k connKey, c *conn) {
	s.resets.Add(1)
	s.sendLocked(d, c, &seg{seq: c.sndNxt, ack: c.rcvNxt, flags: packet.TCPFlagRST | packet.TCPFlagACK})
	delete(s.conns, k)
}
