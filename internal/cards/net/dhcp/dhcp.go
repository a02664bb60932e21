package dhcp

import (
	"encoding/binary"
	"math"
	"net/netip"
	"time"
)

// UDP ports (RFC 2131 §4.1).
const (
	ServerPort = 67
	ClientPort = 68
)

// DefaultLease is the lease time of a Config whose Lease is zero, EC2's.
const DefaultLease = time.Hour

// Route is one classless static route (RFC 3442): Prefix is reached via
// the router Via, or on the link when Via is the zero Addr.
type Route struct {
	Prefix netip.Prefix
	Via    netip.Addr
}

// Config is what the server tells its one client. ServerIP is the
// address the server answers from and names itself by (option 54), the
// subnet's gateway in a VPC.
type Config struct {
	ServerIP  netip.Addr
	ServerMAC [6]byte // the Ethernet source of AppendFrame's frames
	// Router is the default gateway (option 3, and 0.0.0.0/0 in option
	// 121); the zero Addr sends none.
	Router    netip.Addr
	ClientMAC [6]byte
	ClientIP  netip.Addr
	// Prefix is the subnet's prefix length, sent as a mask (option 1)
	// and, with ClientIP, the broadcast address (option 28) unless it is
	// 31 or 32.
	Prefix int
	DNS    []netip.Addr // option 6; at most 63
	MTU    uint16       // option 26; 0 sends none
	// Routes go in option 121. RFC 3442 clients ignore option 3 when
	// option 121 is present, so when Routes is not empty and Router is
	// set, a default route via Router is added unless Routes has one.
	Routes []Route
	// Lease is the lease time (option 51; renewal at half of it and
	// rebinding at seven eighths, options 58 and 59); zero means
	// DefaultLease, and 2^32-1 seconds or more an infinite lease.
	Lease            time.Duration
	Hostname, Domain string // options 12 and 15; empty sends none
}

// Validate reports whether c can be served. Reply validates its Config
// every time; the card calls Validate when it is configured, to refuse a
// bad configuration there.
func (c *Config) Validate() error {
	if !c.ServerIP.Is4() {
		return errServerIP
	}
	if !c.ClientIP.Is4() {
		return errClientIP
	}
	if c.ClientIP == c.ServerIP {
		return errSameAddress
	}
	if c.Router.IsValid() && !c.Router.Is4() {
		return errRouter
	}
	if c.Prefix < 1 || c.Prefix > 32 {
		return errPrefix
	}
	if len(c.DNS) > 255/4 {
		return errDNS
	}
	for _, a := range c.DNS {
		if !a.Is4() {
			return errDNS
		}
	}
	if c.MTU != 0 && c.MTU < 68 {
		return errMTU
	}
	for _, r := range c.Routes {
		if !r.Prefix.IsValid() || !r.Prefix.Addr().Is4() || (r.Via.IsValid() && !r.Via.Is4()) {
			return errRoute
		}
	}
	if routesLen(c) > 255 {
		return errRoutesLen
	}
	if c.Lease < 0 {
		return errLease
	}
	if c.Hostname != "" && (len(c.Hostname) > 63 || !isDNSName(c.Hostname)) {
		return errHostname
	}
	if c.Domain != "" && !isDNSName(c.Domain) {
		return errDomain
	}
	return nil
}

// isDNSName reports whether s is dot-separated labels of 1 to 63 letters,
// digits and hyphens, not starting or ending with a hyphen, at most 253
// bytes, with an optional final dot: nothing a client's shell script could
// take for anything but a name.
func isDNSName(s string) bool {
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 || s[i-1] == '-' {
				return false
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return false
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0 && s[len(s)-1] != '-'
}

// defaultRoute reports whether option 121 gets a default route via Router
// that Routes does not have.
func defaultRoute(c *Config) bool {
	if len(c.Routes) == 0 || !c.Router.IsValid() {
		return false
	}
	for _, r := range c.Routes {
		if r.Prefix.Bits() == 0 {
			return false
		}
	}
	return true
}

// routesLen returns the length of option 121's value.
func routesLen(c *Config) int {
	n := 0
	for _, r := range c.Routes {
		n += 1 + (r.Prefix.Bits()+7)/8 + 4
	}
	if defaultRoute(c) {
		n += 1 + 4
	}
	return n
}

// Reply answers req, the UDP payload of a datagram the client sent to
// port 67, by appending the reply to out; resp is the extended slice, or
// nil (and out is untouched) when the request wants no reply: RELEASE,
// DECLINE, or a REQUEST that selects another server. It returns an error
// (wrapping ErrMalformed, ErrUnsupported or ErrNotClient) for a request
// that is not to be answered because of what it is, and ErrConfig when
// cfg is invalid. Reply does not allocate when out has room for the
// reply (at most 1472 bytes).
func Reply(cfg *Config, req []byte, out []byte) (resp []byte, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var m message
	if err := parseMessage(req, &m); err != nil {
		return nil, err
	}
	if m.op != opRequest {
		return nil, errOp
	}
	if m.chaddr != cfg.ClientMAC {
		return nil, ErrNotClient
	}
	switch m.typ {
	case Discover:
		return appendReply(out, cfg, req, &m, Offer), nil
	case Request:
		var asked netip.Addr
		switch {
		case m.serverID.IsValid():
			// SELECTING: the client answers the OFFER it chose.
			if m.serverID != cfg.ServerIP {
				return nil, nil
			}
			asked = m.requested
		case m.requested.IsValid():
			asked = m.requested // INIT-REBOOT
		default:
			asked = m.ciaddr // RENEWING or REBINDING
		}
		if !asked.IsValid() || asked.IsUnspecified() {
			return nil, errNoAddress
		}
		if asked != cfg.ClientIP {
			return appendReply(out, cfg, req, &m, Nak), nil
		}
		return appendReply(out, cfg, req, &m, Ack), nil
	case Inform:
		return appendReply(out, cfg, req, &m, Ack), nil
	case Release, Decline:
		return nil, nil
	default:
		return nil, errMessageType
	}
}

// maxReply is the largest reply Reply makes: an Ethernet MTU's worth of
// UDP payload.
const maxReply = 1500 - 20 - 8

// replyLimit returns the largest message the client takes: option 57
// counts the IP and UDP headers (RFC 2132 §9.10) and cannot be below 576,
// the size every host must accept, which is also the default.
func replyLimit(m *message) int {
	size := max(int(m.maxSize), 576)
	return min(size-20-8, maxReply)
}

// appendReply appends the reply of type typ to the request m (its bytes
// req) to out. Fields follow RFC 2131 table 3; options put the ones a
// client must have first, then those the client asked for (option 55),
// then the rest, each only if it still fits the client's limit.
func appendReply(out []byte, cfg *Config, req []byte, m *message, typ MessageType) []byte {
	start := len(out)
	var hdr [offOptions]byte
	hdr[offOp] = opReply
	hdr[offHType] = htypeEthernet
	hdr[offHLen] = 6
	copy(hdr[offXID:offXID+4], req[offXID:])
	binary.BigEndian.PutUint16(hdr[offFlags:], m.flags)
	if typ != Nak {
		// ciaddr: the client's, in an ACK (RENEWING, REBINDING, INFORM).
		if typ == Ack {
			copy(hdr[offCIAddr:offCIAddr+4], req[offCIAddr:])
		}
		if !(typ == Ack && m.typ == Inform) {
			a := cfg.ClientIP.As4()
			copy(hdr[offYIAddr:], a[:])
		}
	}
	copy(hdr[offGIAddr:offGIAddr+4], req[offGIAddr:])
	copy(hdr[offCHAddr:offCHAddr+16], req[offCHAddr:])
	copy(hdr[offMagic:], magic[:])
	out = append(out, hdr[:]...)

	server := cfg.ServerIP.As4()
	out = append(out, optMessageType, 1, byte(typ))
	out = append(out, optServerID, 4, server[0], server[1], server[2], server[3])
	if typ == Nak {
		out = append(out, optMessage, byte(len(nakMessage)))
		out = append(out, nakMessage...)
		return endAndPad(out, start)
	}

	if m.typ != Inform {
		lease := leaseSeconds(cfg.Lease)
		out = appendU32(out, optLeaseTime, lease)
		if lease != math.MaxUint32 {
			out = appendU32(out, optRenewalTime, lease/2)
			out = appendU32(out, optRebindingTime, uint32(uint64(lease)*7/8))
		}
	}
	out = appendU32(out, optSubnetMask, ^uint32(0)<<(32-cfg.Prefix))
	if cfg.Router.IsValid() {
		r := cfg.Router.As4()
		out = append(out, optRouter, 4, r[0], r[1], r[2], r[3])
	}
	if n := routesLen(cfg); n > 0 {
		out = append(out, optClasslessRoutes, byte(n))
		for _, r := range cfg.Routes {
			out = appendRoute(out, r.Prefix.Masked(), r.Via)
		}
		if defaultRoute(cfg) {
			out = appendRoute(out, netip.PrefixFrom(netip.IPv4Unspecified(), 0), cfg.Router)
		}
	}

	// The rest, requested first, each if it fits with the END option.
	limit := start + replyLimit(m) - 1
	for pass := 0; pass < 2; pass++ {
		for _, code := range optional {
			if requested(m.params, code) != (pass == 0) {
				continue
			}
			out = appendOptional(out, cfg, code, limit)
		}
	}
	return endAndPad(out, start)
}

const nakMessage = "requested address is not this client's"

// optional lists the options sent when there is room, in the order they
// are added within each pass.
var optional = [...]byte{optDNS, optMTU, optBroadcast, optDomain, optHostname}

func requested(params []byte, code byte) bool {
	for _, p := range params {
		if p == code {
			return true
		}
	}
	return false
}

// appendOptional appends option code from cfg if cfg has it and it ends
// at or before limit.
func appendOptional(out []byte, cfg *Config, code byte, limit int) []byte {
	var n int
	switch code {
	case optDNS:
		n = 4 * len(cfg.DNS)
	case optMTU:
		if cfg.MTU != 0 {
			n = 2
		}
	case optBroadcast:
		if cfg.Prefix <= 30 { // a /31 or /32 has no broadcast address (RFC 3021)
			n = 4
		}
	case optDomain:
		n = len(cfg.Domain)
	case optHostname:
		n = len(cfg.Hostname)
	}
	if n == 0 || len(out)+2+n > limit {
		return out
	}
	out = append(out, code, byte(n))
	switch code {
	case optDNS:
		for _, a := range cfg.DNS {
			b := a.As4()
			out = append(out, b[:]...)
		}
	case optMTU:
		out = append(out, byte(cfg.MTU>>8), byte(cfg.MTU))
	case optBroadcast:
		a := cfg.ClientIP.As4()
		ip := binary.BigEndian.Uint32(a[:])
		out = binary.BigEndian.AppendUint32(out, ip|^(^uint32(0)<<(32-cfg.Prefix)))
	case optDomain:
		out = append(out, cfg.Domain...)
	case optHostname:
		out = append(out, cfg.Hostname...)
	}
	return out
}

// appendRoute appends one RFC 3442 route: the prefix length, the
// significant octets of the destination, the router (0.0.0.0 on-link).
func appendRoute(out []byte, p netip.Prefix, via netip.Addr) []byte {
	bits := p.Bits()
	d := p.Addr().As4()
	out = append(out, byte(bits))
	out = append(out, d[:(bits+7)/8]...)
	var r [4]byte
	if via.IsValid() {
		r = via.As4()
	}
	return append(out, r[:]...)
}

func appendU32(out []byte, code byte, v uint32) []byte {
	return append(out, code, 4, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// endAndPad ends the options and pads the message that starts at start to
// the BOOTP minimum.
func endAndPad(out []byte, start int) []byte {
	out = append(out, optEnd)
	for len(out)-start < minMessage {
		out = append(out, optPad)
	}
	return out
}

// leaseSeconds converts a lease to option 51's value: zero is
// DefaultLease, anything that does not fit below 2^32-1 is infinite, and
// no lease is shorter than a second.
func leaseSeconds(d time.Duration) uint32 {
	if d == 0 {
		d = DefaultLease
	}
	s := d / time.Second
	if s >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(max(s, 1))
}
