package dhcp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/cards/net/packet"
)

var (
	clientMAC = [6]byte{0x02, 0x00, 0x0a, 0x00, 0x01, 0x05}
	serverMAC = [6]byte{0x02, 0xaa, 0x00, 0x00, 0x00, 0x01}
	addr      = netip.MustParseAddr
)

func testConfig() *Config {
	return &Config{
		ServerIP:  addr("10.0.1.1"),
		ServerMAC: serverMAC,
		Router:    addr("10.0.1.1"),
		ClientMAC: clientMAC,
		ClientIP:  addr("10.0.1.5"),
		Prefix:    24,
		DNS:       []netip.Addr{addr("10.0.0.2"), addr("10.0.0.3")},
		MTU:       9001,
		Routes: []Route{
			{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Via: addr("10.0.1.1")},
			{Prefix: netip.MustParsePrefix("169.254.169.254/32")},
		},
		Lease:    2 * time.Hour,
		Hostname: "ip-10-0-1-5",
		Domain:   "ec2.internal",
	}
}

// req describes a client message for build.
type req struct {
	op          byte // 0 means BOOTREQUEST
	htype, hlen byte // 0 means Ethernet
	xid         uint32
	flags       uint16
	ciaddr      netip.Addr
	giaddr      netip.Addr
	chaddr      *[6]byte // nil means clientMAC
	noMagic     bool
	options     []byte // the options field, END not added
	file, sname []byte
	noEnd       bool
}

func build(r req) []byte {
	b := make([]byte, offOptions)
	b[offOp], b[offHType], b[offHLen] = opRequest, htypeEthernet, 6
	if r.op != 0 {
		b[offOp] = r.op
	}
	if r.htype != 0 {
		b[offHType] = r.htype
	}
	if r.hlen != 0 {
		b[offHLen] = r.hlen
	}
	binary.BigEndian.PutUint32(b[offXID:], r.xid)
	binary.BigEndian.PutUint16(b[offFlags:], r.flags)
	if r.ciaddr.IsValid() {
		a := r.ciaddr.As4()
		copy(b[offCIAddr:], a[:])
	}
	if r.giaddr.IsValid() {
		a := r.giaddr.As4()
		copy(b[offGIAddr:], a[:])
	}
	mac := clientMAC
	if r.chaddr != nil {
		mac = *r.chaddr
	}
	copy(b[offCHAddr:], mac[:])
	copy(b[offSName:offSName+lenSName], r.sname)
	copy(b[offFile:offFile+lenFile], r.file)
	if !r.noMagic {
		copy(b[offMagic:], magic[:])
	}
	b = append(b, r.options...)
	if !r.noEnd {
		b = append(b, optEnd)
	}
	return b
}

func opt(code byte, v ...byte) []byte { return append([]byte{code, byte(len(v))}, v...) }

func ip4(s string) []byte { a := addr(s).As4(); return a[:] }

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func msgType(t MessageType) []byte { return opt(optMessageType, byte(t)) }

// decoded is a reply, checked for the rules every reply obeys.
type decoded struct {
	m    message
	opts map[byte][]byte
	raw  []byte
}

func decode(t *testing.T, b []byte) decoded {
	t.Helper()
	var d decoded
	d.raw = b
	if err := parseMessage(b, &d.m); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if d.m.op != opReply || len(b) < minMessage {
		t.Fatalf("op %d, %d bytes", d.m.op, len(b))
	}
	d.opts = map[byte][]byte{}
	area := b[offOptions:]
	for i := 0; ; {
		if i >= len(area) {
			t.Fatal("reply has no END option")
		}
		c := area[i]
		if c == optEnd {
			for _, p := range area[i+1:] {
				if p != 0 {
					t.Fatal("non-zero padding after END")
				}
			}
			break
		}
		if c == optPad {
			t.Fatal("PAD inside the options")
		}
		v := area[i+2 : i+2+int(area[i+1])]
		if _, dup := d.opts[c]; dup {
			t.Fatalf("option %d twice", c)
		}
		d.opts[c] = v
		i += 2 + len(v)
	}
	return d
}

func (d decoded) has(t *testing.T, code byte, want []byte) {
	t.Helper()
	got, ok := d.opts[code]
	if !ok {
		t.Errorf("option %d missing", code)
		return
	}
	if want != nil && string(got) != string(want) {
		t.Errorf("option %d = % x, want % x", code, got, want)
	}
}

func (d decoded) lacks(t *testing.T, codes ...byte) {
	t.Helper()
	for _, c := range codes {
		if _, ok := d.opts[c]; ok {
			t.Errorf("option %d present", c)
		}
	}
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// checkLease checks the options every OFFER and ACK of testConfig carries.
func checkLease(t *testing.T, d decoded, typ MessageType) {
	t.Helper()
	d.has(t, optMessageType, []byte{byte(typ)})
	d.has(t, optServerID, ip4("10.0.1.1"))
	d.has(t, optLeaseTime, u32(7200))
	d.has(t, optRenewalTime, u32(3600))
	d.has(t, optRebindingTime, u32(6300))
	d.has(t, optSubnetMask, ip4("255.255.255.0"))
	d.has(t, optRouter, ip4("10.0.1.1"))
	d.has(t, optDNS, cat(ip4("10.0.0.2"), ip4("10.0.0.3")))
	d.has(t, optMTU, []byte{0x23, 0x29})
	d.has(t, optBroadcast, ip4("10.0.1.255"))
	d.has(t, optHostname, []byte("ip-10-0-1-5"))
	d.has(t, optDomain, []byte("ec2.internal"))
	// RFC 3442: 16 10 1 via 10.0.1.1; 32 169 254 169 254 on-link; and
	// the default route via the router, since option 3 is ignored.
	d.has(t, optClasslessRoutes, cat([]byte{16, 10, 1}, ip4("10.0.1.1"), []byte{32, 169, 254, 169, 254}, ip4("0.0.0.0"), []byte{0}, ip4("10.0.1.1")))
}

func TestReply(t *testing.T) {
	other := [6]byte{0x02, 0, 0, 0, 0, 0x99}
	cases := []struct {
		name  string
		req   req
		err   error
		none  bool // no reply
		typ   MessageType
		check func(t *testing.T, d decoded)
	}{
		{name: "discover", req: req{xid: 0xdeadbeef, flags: flagBroadcast, options: cat(msgType(Discover), opt(optParamRequest, 1, 3, 6, 121))}, typ: Offer,
			check: func(t *testing.T, d decoded) {
				checkLease(t, d, Offer)
				if d.m.yiaddr != addr("10.0.1.5") || !d.m.ciaddr.IsUnspecified() || d.m.flags != flagBroadcast || binary.BigEndian.Uint32(d.raw[offXID:]) != 0xdeadbeef || d.m.chaddr != clientMAC {
					t.Errorf("fixed fields: %+v", d.m)
				}
			}},
		{name: "discover asking for another address still offers the client's", req: req{options: cat(msgType(Discover), opt(optRequestedIP, ip4("10.0.1.77")...))}, typ: Offer,
			check: func(t *testing.T, d decoded) {
				if d.m.yiaddr != addr("10.0.1.5") {
					t.Errorf("yiaddr %v", d.m.yiaddr)
				}
			}},
		{name: "request selecting", req: req{xid: 7, options: cat(msgType(Request), opt(optServerID, ip4("10.0.1.1")...), opt(optRequestedIP, ip4("10.0.1.5")...))}, typ: Ack,
			check: func(t *testing.T, d decoded) {
				checkLease(t, d, Ack)
				if d.m.yiaddr != addr("10.0.1.5") || !d.m.ciaddr.IsUnspecified() {
					t.Errorf("%+v", d.m)
				}
			}},
		{name: "request selecting another server", req: req{options: cat(msgType(Request), opt(optServerID, ip4("10.0.1.2")...), opt(optRequestedIP, ip4("10.0.1.5")...))}, none: true},
		{name: "request selecting another address", req: req{flags: 0, giaddr: addr("0.0.0.0"), options: cat(msgType(Request), opt(optServerID, ip4("10.0.1.1")...), opt(optRequestedIP, ip4("10.0.1.6")...))}, typ: Nak,
			check: func(t *testing.T, d decoded) {
				d.has(t, optServerID, ip4("10.0.1.1"))
				d.has(t, optMessage, nil)
				d.lacks(t, optLeaseTime, optSubnetMask, optRouter, optDNS, optClasslessRoutes, optRenewalTime)
				if !d.m.yiaddr.IsUnspecified() || !d.m.ciaddr.IsUnspecified() {
					t.Errorf("%+v", d.m)
				}
			}},
		{name: "request selecting without requested address", req: req{options: cat(msgType(Request), opt(optServerID, ip4("10.0.1.1")...))}, err: ErrMalformed},
		{name: "request init-reboot", req: req{options: cat(msgType(Request), opt(optRequestedIP, ip4("10.0.1.5")...))}, typ: Ack, check: func(t *testing.T, d decoded) { checkLease(t, d, Ack) }},
		{name: "request init-reboot another address", req: req{options: cat(msgType(Request), opt(optRequestedIP, ip4("192.168.1.20")...))}, typ: Nak},
		{name: "request renewing", req: req{ciaddr: addr("10.0.1.5"), options: msgType(Request)}, typ: Ack,
			check: func(t *testing.T, d decoded) {
				checkLease(t, d, Ack)
				if d.m.ciaddr != addr("10.0.1.5") || d.m.yiaddr != addr("10.0.1.5") {
					t.Errorf("%+v", d.m)
				}
			}},
		{name: "request rebinding another address", req: req{ciaddr: addr("10.0.9.5"), flags: flagBroadcast, options: msgType(Request)}, typ: Nak,
			check: func(t *testing.T, d decoded) {
				if !d.m.ciaddr.IsUnspecified() || d.m.flags != flagBroadcast {
					t.Errorf("%+v", d.m)
				}
			}},
		{name: "request naming nothing", req: req{options: msgType(Request)}, err: ErrMalformed},
		{name: "inform", req: req{ciaddr: addr("10.0.1.5"), options: msgType(Inform)}, typ: Ack,
			check: func(t *testing.T, d decoded) {
				d.lacks(t, optLeaseTime, optRenewalTime, optRebindingTime)
				d.has(t, optSubnetMask, nil)
				d.has(t, optDNS, nil)
				if !d.m.yiaddr.IsUnspecified() || d.m.ciaddr != addr("10.0.1.5") {
					t.Errorf("%+v", d.m)
				}
			}},
		{name: "release", req: req{ciaddr: addr("10.0.1.5"), options: cat(msgType(Release), opt(optServerID, ip4("10.0.1.1")...))}, none: true},
		{name: "decline", req: req{options: cat(msgType(Decline), opt(optRequestedIP, ip4("10.0.1.5")...))}, none: true},
		{name: "offer from a client", req: req{options: msgType(Offer)}, err: ErrUnsupported},
		{name: "unknown type", req: req{options: msgType(42)}, err: ErrUnsupported},
		{name: "another hardware address", req: req{chaddr: &other, options: msgType(Discover)}, err: ErrNotClient},
		{name: "bootreply", req: req{op: opReply, options: msgType(Discover)}, err: ErrMalformed},
		{name: "token ring", req: req{htype: 6, options: msgType(Discover)}, err: ErrUnsupported},
		{name: "hlen 16", req: req{hlen: 16, options: msgType(Discover)}, err: ErrUnsupported},
		{name: "bootp without magic", req: req{noMagic: true, options: msgType(Discover)}, err: ErrUnsupported},
		{name: "no message type", req: req{options: opt(optHostname, 'a')}, err: ErrUnsupported},
		{name: "message type of length 2", req: req{options: opt(optMessageType, 1, 1)}, err: ErrMalformed},
		{name: "requested address of length 3", req: req{options: cat(msgType(Request), opt(optRequestedIP, 10, 0, 1))}, err: ErrMalformed},
		{name: "option past the end", req: req{noEnd: true, options: cat(msgType(Discover), []byte{optHostname, 5, 'a'})}, err: ErrMalformed},
		{name: "option code without length at the end", req: req{noEnd: true, options: cat(msgType(Discover), []byte{optHostname})}, err: ErrMalformed},
		{name: "pads and no end", req: req{noEnd: true, options: cat([]byte{0, 0, 0}, msgType(Discover), []byte{0})}, typ: Offer},
		{name: "first occurrence wins", req: req{options: cat(msgType(Discover), msgType(Release))}, typ: Offer},
		{name: "options after end are ignored", req: req{options: cat(msgType(Discover), []byte{optEnd, optHostname, 200})}, typ: Offer},
		{name: "overload: type in file", req: req{options: opt(optOverload, 1), file: cat(msgType(Discover), []byte{optEnd})}, typ: Offer},
		{name: "overload: type in sname", req: req{options: opt(optOverload, 2), sname: cat(msgType(Request), opt(optRequestedIP, ip4("10.0.1.5")...), []byte{optEnd})}, typ: Ack},
		{name: "overload both: options field first", req: req{options: cat(opt(optOverload, 3), msgType(Request)), file: opt(optRequestedIP, ip4("10.0.1.5")...), sname: opt(optRequestedIP, ip4("10.0.1.6")...)}, typ: Ack},
		{name: "options in file without overload are ignored", req: req{file: msgType(Discover)}, err: ErrUnsupported},
		{name: "overload option in file does not chain", req: req{options: opt(optOverload, 1), file: cat(opt(optOverload, 2), msgType(Discover))}, typ: Offer},
		{name: "option running past file", req: req{options: opt(optOverload, 1), file: cat(make([]byte, 126), []byte{optHostname, 4})}, err: ErrMalformed},
		{name: "overload of length 2", req: req{options: cat(msgType(Discover), opt(optOverload, 1, 1))}, err: ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := build(c.req)
			out := make([]byte, 3, 1500)
			resp, err := Reply(testConfig(), b, out)
			if c.err != nil || err != nil {
				if !errors.Is(err, c.err) || c.err == nil {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				if resp != nil {
					t.Fatal("reply with an error")
				}
				return
			}
			if c.none {
				if resp != nil {
					t.Fatalf("reply of %d bytes, want none", len(resp))
				}
				return
			}
			if len(resp) < 3 || &resp[0] != &out[0] {
				t.Fatal("reply not appended to out")
			}
			d := decode(t, resp[3:])
			if d.m.typ != c.typ {
				t.Fatalf("%v, want %v", d.m.typ, c.typ)
			}
			if len(resp)-3 > 548 {
				t.Fatalf("%d bytes, more than the 576-byte default", len(resp)-3)
			}
			if c.check != nil {
				c.check(t, d)
			}
		})
	}
}

func TestReplyOptions(t *testing.T) {
	discover := build(req{options: msgType(Discover)})
	reply := func(t *testing.T, cfg *Config, r []byte) decoded {
		t.Helper()
		resp, err := Reply(cfg, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, resp)
	}

	t.Run("minimal config", func(t *testing.T) {
		cfg := &Config{ServerIP: addr("192.168.0.1"), ClientIP: addr("192.168.0.2"), ClientMAC: clientMAC, Prefix: 30}
		d := reply(t, cfg, discover)
		d.has(t, optLeaseTime, u32(3600))
		d.has(t, optSubnetMask, ip4("255.255.255.252"))
		d.has(t, optBroadcast, ip4("192.168.0.3"))
		d.lacks(t, optRouter, optDNS, optMTU, optClasslessRoutes, optHostname, optDomain)
		if len(d.raw) != minMessage {
			t.Errorf("%d bytes, want padding to %d", len(d.raw), minMessage)
		}
	})
	t.Run("a /31 has no broadcast address", func(t *testing.T) {
		cfg := &Config{ServerIP: addr("192.168.0.0"), ClientIP: addr("192.168.0.1"), ClientMAC: clientMAC, Prefix: 31}
		d := reply(t, cfg, discover)
		d.has(t, optSubnetMask, ip4("255.255.255.254"))
		d.lacks(t, optBroadcast)
	})
	t.Run("routes without router have no default route", func(t *testing.T) {
		cfg := testConfig()
		cfg.Router = netip.Addr{}
		d := reply(t, cfg, discover)
		d.lacks(t, optRouter)
		d.has(t, optClasslessRoutes, cat([]byte{16, 10, 1}, ip4("10.0.1.1"), []byte{32, 169, 254, 169, 254}, ip4("0.0.0.0")))
	})
	t.Run("a default route in Routes is not doubled", func(t *testing.T) {
		cfg := testConfig()
		cfg.Routes = []Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Via: addr("10.0.1.9")}, {Prefix: netip.MustParsePrefix("10.2.3.128/25"), Via: addr("10.0.1.1")}}
		d := reply(t, cfg, discover)
		d.has(t, optClasslessRoutes, cat([]byte{0}, ip4("10.0.1.9"), []byte{25, 10, 2, 3, 128}, ip4("10.0.1.1")))
	})
	t.Run("host bits of a route are masked", func(t *testing.T) {
		cfg := testConfig()
		cfg.Routes = []Route{{Prefix: netip.MustParsePrefix("10.2.3.4/9"), Via: addr("10.0.1.1")}}
		d := reply(t, cfg, discover)
		d.has(t, optClasslessRoutes, cat([]byte{9, 10, 0}, ip4("10.0.1.1"), []byte{0}, ip4("10.0.1.1")))
	})
	t.Run("no routes: option 3 only", func(t *testing.T) {
		cfg := testConfig()
		cfg.Routes = nil
		d := reply(t, cfg, discover)
		d.has(t, optRouter, ip4("10.0.1.1"))
		d.lacks(t, optClasslessRoutes)
	})
	t.Run("infinite lease", func(t *testing.T) {
		cfg := testConfig()
		cfg.Lease = 200 * 365 * 24 * time.Hour
		d := reply(t, cfg, discover)
		d.has(t, optLeaseTime, u32(0xffffffff))
		d.lacks(t, optRenewalTime, optRebindingTime)
	})
	t.Run("sub-second lease is a second", func(t *testing.T) {
		cfg := testConfig()
		cfg.Lease = time.Millisecond
		d := reply(t, cfg, discover)
		d.has(t, optLeaseTime, u32(1))
		d.has(t, optRenewalTime, u32(0))
	})

	// A config whose options do not all fit 576 bytes: the ones the
	// client asked for go in first; with option 57 all of them fit.
	big := testConfig()
	big.Domain = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + ".example"
	big.Hostname = strings.Repeat("h", 30)
	for i := 0; i < 20; i++ {
		big.DNS = append(big.DNS, netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}))
	}
	for i := 0; i < 24; i++ {
		big.Routes = append(big.Routes, Route{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24), Via: addr("10.0.1.1")})
	}
	if err := big.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Run("576 bytes: requested options first", func(t *testing.T) {
		d := reply(t, big, build(req{options: cat(msgType(Discover), opt(optParamRequest, optHostname, optMTU))}))
		if len(d.raw) > 548 {
			t.Fatalf("%d bytes", len(d.raw))
		}
		d.has(t, optClasslessRoutes, nil)
		d.has(t, optRouter, nil)
		d.has(t, optHostname, nil)
		d.has(t, optMTU, nil)
		d.has(t, optBroadcast, nil) // unrequested, but it fits
		d.lacks(t, optDomain, optDNS)
	})
	t.Run("option 57 makes room", func(t *testing.T) {
		d := reply(t, big, build(req{options: cat(msgType(Discover), opt(optMaxMessageSize, 0x05, 0xdc))}))
		if len(d.raw) > 1500-28 {
			t.Fatalf("%d bytes", len(d.raw))
		}
		for _, c := range optional {
			d.has(t, c, nil)
		}
	})
	t.Run("option 57 below 576 is 576", func(t *testing.T) {
		d := reply(t, big, build(req{options: cat(msgType(Discover), opt(optMaxMessageSize, 0x01, 0x00))}))
		if len(d.raw) > 548 || len(d.raw) < 500 {
			t.Fatalf("%d bytes", len(d.raw))
		}
	})
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		change func(c *Config)
		ok     bool
	}{
		{name: "test config", change: func(c *Config) {}, ok: true},
		{name: "no server", change: func(c *Config) { c.ServerIP = netip.Addr{} }},
		{name: "ipv6 server", change: func(c *Config) { c.ServerIP = addr("fd00::1") }},
		{name: "no client", change: func(c *Config) { c.ClientIP = netip.Addr{} }},
		{name: "same addresses", change: func(c *Config) { c.ClientIP = c.ServerIP }},
		{name: "ipv6 router", change: func(c *Config) { c.Router = addr("fd00::1") }},
		{name: "prefix 0", change: func(c *Config) { c.Prefix = 0 }},
		{name: "prefix 33", change: func(c *Config) { c.Prefix = 33 }},
		{name: "prefix 32", change: func(c *Config) { c.Prefix = 32 }, ok: true},
		{name: "ipv6 dns", change: func(c *Config) { c.DNS = append(c.DNS, addr("::1")) }},
		{name: "64 dns", change: func(c *Config) {
			c.DNS = make([]netip.Addr, 64)
			for i := range c.DNS {
				c.DNS[i] = addr("10.0.0.2")
			}
		}},
		{name: "mtu 67", change: func(c *Config) { c.MTU = 67 }},
		{name: "mtu 68", change: func(c *Config) { c.MTU = 68 }, ok: true},
		{name: "ipv6 route", change: func(c *Config) { c.Routes = []Route{{Prefix: netip.MustParsePrefix("fd00::/8")}} }},
		{name: "ipv6 via", change: func(c *Config) {
			c.Routes = []Route{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Via: addr("fd00::1")}}
		}},
		{name: "zero route prefix", change: func(c *Config) { c.Routes = []Route{{}} }},
		{name: "routes over 255 bytes", change: func(c *Config) {
			for i := 0; i < 28; i++ {
				c.Routes = append(c.Routes, Route{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 32), Via: c.Router})
			}
		}},
		{name: "negative lease", change: func(c *Config) { c.Lease = -time.Second }},
		{name: "hostname with a space", change: func(c *Config) { c.Hostname = "a b" }},
		{name: "hostname with a quote", change: func(c *Config) { c.Hostname = "a'$(reboot)" }},
		{name: "hostname of 64", change: func(c *Config) { c.Hostname = strings.Repeat("a", 64) }},
		{name: "fqdn hostname", change: func(c *Config) { c.Hostname = "web-1.example.com." }, ok: true},
		{name: "hostname starting with hyphen", change: func(c *Config) { c.Hostname = "-a" }},
		{name: "label ending with hyphen", change: func(c *Config) { c.Domain = "a-.example" }},
		{name: "empty label", change: func(c *Config) { c.Domain = "a..example" }},
		{name: "label of 64", change: func(c *Config) { c.Domain = strings.Repeat("a", 64) + ".example" }},
		{name: "domain of 254", change: func(c *Config) { c.Domain = strings.Repeat(strings.Repeat("a", 62)+".", 4) + "ab" }},
		{name: "domain of 253", change: func(c *Config) { c.Domain = strings.Repeat(strings.Repeat("a", 62)+".", 4) + "a" }, ok: true},
		{name: "domain just a dot", change: func(c *Config) { c.Domain = "." }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			c.change(cfg)
			err := cfg.Validate()
			if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("Validate: %v", err)
			}
			if _, rerr := Reply(cfg, build(req{options: msgType(Discover)}), nil); (rerr == nil) != (err == nil) {
				t.Fatalf("Reply: %v, Validate: %v", rerr, err)
			}
		})
	}
}

func TestAppendFrame(t *testing.T) {
	bcast := addr("255.255.255.255")
	cases := []struct {
		name   string
		req    req
		dstMAC packet.MAC
		dstIP  netip.Addr
	}{
		{name: "offer unicast to yiaddr", req: req{options: msgType(Discover)}, dstMAC: clientMAC, dstIP: addr("10.0.1.5")},
		{name: "offer with broadcast flag", req: req{flags: flagBroadcast, options: msgType(Discover)}, dstMAC: packet.BroadcastMAC, dstIP: bcast},
		{name: "renewal ack to ciaddr", req: req{ciaddr: addr("10.0.1.5"), flags: flagBroadcast, options: msgType(Request)}, dstMAC: clientMAC, dstIP: addr("10.0.1.5")},
		{name: "inform ack to ciaddr", req: req{ciaddr: addr("10.0.1.5"), options: msgType(Inform)}, dstMAC: clientMAC, dstIP: addr("10.0.1.5")},
		{name: "nak broadcast", req: req{ciaddr: addr("10.0.7.7"), options: msgType(Request)}, dstMAC: packet.BroadcastMAC, dstIP: bcast},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			resp, err := Reply(cfg, build(c.req), nil)
			if err != nil {
				t.Fatal(err)
			}
			f, err := AppendFrame([]byte{1, 2}, cfg, resp)
			if err != nil {
				t.Fatal(err)
			}
			f = f[2:]
			var p packet.Packet
			if err := packet.Parse(f, &p); err != nil {
				t.Fatal(err)
			}
			if err := packet.VerifyTransport(f, &p); err != nil {
				t.Fatal(err)
			}
			if p.Dst != c.dstMAC || p.DstIP != c.dstIP || p.Src != serverMAC || p.SrcIP != cfg.ServerIP || p.SrcPort != 67 || p.DstPort != 68 {
				t.Fatalf("%v %v → %v %v", p.Src, p.SrcIP, p.Dst, p.DstIP)
			}
			if string(p.TransportPayload(f)) != string(resp) {
				t.Fatal("payload differs")
			}
		})
	}
	cfg := testConfig()
	if b, err := AppendFrame([]byte{1}, cfg, build(req{options: msgType(Discover)})); !errors.Is(err, ErrMalformed) || len(b) != 1 {
		t.Fatalf("a request: %v", err)
	}
	resp, _ := Reply(cfg, build(req{options: msgType(Discover)}), nil)
	cfg.ServerIP = netip.Addr{}
	if _, err := AppendFrame(nil, cfg, resp); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad config: %v", err)
	}
}

func TestReplyDoesNotAllocate(t *testing.T) {
	cfg := testConfig()
	reqs := [][]byte{
		build(req{options: cat(msgType(Discover), opt(optParamRequest, 1, 3, 6, 26, 121))}),
		build(req{options: cat(msgType(Request), opt(optServerID, ip4("10.0.1.1")...), opt(optRequestedIP, ip4("10.0.1.5")...))}),
		build(req{options: cat(msgType(Request), opt(optRequestedIP, ip4("10.0.1.6")...))}),
	}
	out := make([]byte, 0, 1500)
	frame := make([]byte, 0, 1600)
	if a := testing.AllocsPerRun(100, func() {
		for _, r := range reqs {
			resp, err := Reply(cfg, r, out)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := AppendFrame(frame, cfg, resp); err != nil {
				t.Fatal(err)
			}
		}
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

func TestMessageTypeString(t *testing.T) {
	if Discover.String() != "DHCPDISCOVER" || Inform.String() != "DHCPINFORM" || MessageType(0).String() != "DHCP(unknown)" || MessageType(9).String() != "DHCP(unknown)" {
		t.Fatal(Discover.String(), Inform.String())
	}
}
