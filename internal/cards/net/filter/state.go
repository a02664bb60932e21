package filter

import "time"

// tcpState is where a tracked TCP connection stands, as far as the flags
// it has carried tell.
type tcpState uint8

const (
	tcpNone        tcpState = iota // not TCP
	tcpSynSent                     // the opener sent SYN
	tcpSynRecv                     // the other side answered SYN-ACK (or SYN: simultaneous open)
	tcpEstablished                 // the opener acknowledged
	tcpFinWait                     // the opener sent FIN
	tcpCloseWait                   // the other side sent FIN
	tcpTimeWait                    // both sent FIN
	tcpClosed                      // RST
)

var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "TIME_WAIT", "CLOSED"}

func (s tcpState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "?"
}

// closing reports whether the connection is over: its entry is kept only
// for stray packets and is not refreshed by them.
func (s tcpState) closing() bool { return s == tcpTimeWait || s == tcpClosed }

// validTCPFlags rejects combinations no TCP stack sends: a segment carries
// at least one of SYN, ACK and RST, and SYN never comes with FIN or RST.
func validTCPFlags(f TCPFlags) bool {
	if f&(FlagSYN|FlagACK|FlagRST) == 0 {
		return false
	}
	return f&FlagSYN == 0 || f&(FlagFIN|FlagRST) == 0
}

// tcpNext returns the state a tracked connection moves to when a packet
// with flags f goes in direction d, or reopen when it is a SYN that starts
// a new connection on a closed one (to be judged by the rules).
func tcpNext(st tcpState, origin, d Dir, f TCPFlags) (next tcpState, reopen bool) {
	switch {
	case f&FlagRST != 0:
		return tcpClosed, false
	case f&FlagSYN != 0 && f&FlagACK == 0:
		switch {
		case st.closing():
			return st, true
		case st == tcpSynSent && d != origin:
			return tcpSynRecv, false // simultaneous open
		}
		return st, false
	case f&FlagSYN != 0:
		if st == tcpSynSent {
			return tcpSynRecv, false
		}
		return st, false
	}
	if st == tcpSynRecv && d == origin {
		st = tcpEstablished
	}
	if f&FlagFIN != 0 {
		fromOrigin := d == origin
		switch st {
		case tcpSynSent, tcpSynRecv, tcpEstablished:
			if fromOrigin {
				st = tcpFinWait
			} else {
				st = tcpCloseWait
			}
		case tcpFinWait:
			if !fromOrigin {
				st = tcpTimeWait
			}
		case tcpCloseWait:
			if fromOrigin {
				st = tcpTimeWait
			}
		}
	}
	return st, false
}

// tcpFirst returns the state and origin of a connection the tracker first
// sees with a packet with flags f going in direction d. A SYN-ACK means
// the other side opened; anything else without SYN is a connection picked
// up in the middle.
func tcpFirst(d Dir, f TCPFlags) (tcpState, Dir) {
	switch {
	case f&FlagSYN != 0 && f&FlagACK == 0:
		return tcpSynSent, d
	case f&FlagSYN != 0:
		return tcpSynRecv, d ^ 1
	case f&FlagFIN != 0:
		return tcpFinWait, d
	}
	return tcpEstablished, d
}

// Timeouts are the idle timeouts of tracked flows: a flow that carries no
// packet for that long is forgotten, and its next packet is a new flow.
// A zero field takes its default (DefaultTimeouts).
type Timeouts struct {
	// TCPEstablished: EC2's tcpEstablishedTimeout, default 432000 s
	// (5 days).
	TCPEstablished time.Duration
	// TCPTransitory covers SYN_SENT, SYN_RECV, FIN_WAIT and CLOSE_WAIT;
	// default 120 s, as Linux conntrack (EC2 does not document these).
	TCPTransitory time.Duration
	// TCPClosed covers TIME_WAIT and CLOSED, counted from the FIN or RST
	// that closed the connection (later strays do not extend it); default
	// 10 s.
	TCPClosed time.Duration
	// UDP: EC2's udpTimeout, for flows seen one way or in one
	// request-response exchange; default 30 s.
	UDP time.Duration
	// UDPStream: EC2's udpStreamTimeout, for flows that have seen more
	// than one request-response exchange; default 180 s.
	UDPStream time.Duration
	// ICMP covers echo and timestamp queries; default 30 s.
	ICMP time.Duration
	// Other covers other IP protocols, tracked by address and protocol;
	// default 600 s, the window EC2 documents for their replies.
	Other time.Duration
}

// DefaultTimeouts returns EC2's default idle timeouts where EC2 documents
// them, and Linux conntrack's where it does not.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPEstablished: 432000 * time.Second,
		TCPTransitory:  120 * time.Second,
		TCPClosed:      10 * time.Second,
		UDP:            30 * time.Second,
		UDPStream:      180 * time.Second,
		ICMP:           30 * time.Second,
		Other:          600 * time.Second,
	}
}

// timeouts are Timeouts in nanoseconds, indexed by timeoutClass.
type timeouts [numTimeouts]int64

const (
	toTCPEstablished = iota
	toTCPTransitory
	toTCPClosed
	toUDP
	toUDPStream
	toICMP
	toOther
	numTimeouts
)

func (t Timeouts) compile() (*timeouts, error) {
	d := DefaultTimeouts()
	var c timeouts
	for i, p := range [numTimeouts]struct{ v, def time.Duration }{
		toTCPEstablished: {t.TCPEstablished, d.TCPEstablished},
		toTCPTransitory:  {t.TCPTransitory, d.TCPTransitory},
		toTCPClosed:      {t.TCPClosed, d.TCPClosed},
		toUDP:            {t.UDP, d.UDP},
		toUDPStream:      {t.UDPStream, d.UDPStream},
		toICMP:           {t.ICMP, d.ICMP},
		toOther:          {t.Other, d.Other},
	} {
		switch {
		case p.v < 0:
			return nil, ErrInvalidConfig
		case p.v == 0:
			c[i] = int64(p.def)
		default:
			c[i] = int64(p.v)
		}
	}
	return &c, nil
}

// udpStreamTurns is how many times a UDP flow's direction must change for
// it to count as a stream: request, response, request, response.
const udpStreamTurns = 3

// timeout returns e's idle timeout.
func (t *timeouts) timeout(e *entry) int64 {
	switch e.key.proto {
	case uint8(ProtoTCP):
		switch e.state {
		case tcpEstablished:
			return t[toTCPEstablished]
		case tcpTimeWait, tcpClosed:
			return t[toTCPClosed]
		}
		return t[toTCPTransitory]
	case uint8(ProtoUDP):
		if e.turns >= udpStreamTurns {
			return t[toUDPStream]
		}
		return t[toUDP]
	case uint8(ProtoICMP):
		return t[toICMP]
	}
	return t[toOther]
}
