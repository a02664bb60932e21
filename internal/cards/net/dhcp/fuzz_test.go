package dhcp

import (
	"testing"

	"github.com/azote/azote/internal/cards/net/packet"
)

// FuzzReply checks that Reply never panics on any request, and that every
// reply it makes is a BOOTREPLY to the client's hardware address with the
// transaction ID of the request, an OFFER, ACK or NAK, within the client's
// size limit, offering no address but the client's, and that AppendFrame
// wraps it in a frame that parses with valid checksums.
func FuzzReply(f *testing.F) {
	seeds := [][]byte{
		build(req{options: cat(msgType(Discover), opt(optParamRequest, 1, 3, 6, 15, 26, 121))}),
		build(req{options: cat(msgType(Request), opt(optServerID, ip4("10.0.1.1")...), opt(optRequestedIP, ip4("10.0.1.5")...))}),
		build(req{options: cat(msgType(Request), opt(optRequestedIP, ip4("10.0.1.6")...))}),
		build(req{ciaddr: addr("10.0.1.5"), options: msgType(Inform)}),
		build(req{options: cat(opt(optOverload, 3), msgType(Request)), file: opt(optRequestedIP, ip4("10.0.1.5")...), sname: opt(optMaxMessageSize, 5, 0xdc)}),
		build(req{noEnd: true, options: cat(msgType(Discover), []byte{optHostname, 5})}),
		nil,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	cfg := testConfig()
	f.Fuzz(func(t *testing.T, r []byte) {
		resp, err := Reply(cfg, r, nil)
		if err != nil || resp == nil {
			return
		}
		var m, q message
		if err := parseMessage(resp, &m); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if err := parseMessage(r, &q); err != nil {
			t.Fatalf("answered a request that does not parse: %v", err)
		}
		if m.op != opReply || m.chaddr != cfg.ClientMAC || string(resp[offXID:offXID+4]) != string(r[offXID:offXID+4]) {
			t.Fatalf("reply header: %+v", m)
		}
		if m.typ != Offer && m.typ != Ack && m.typ != Nak {
			t.Fatalf("reply type %v", m.typ)
		}
		if !m.yiaddr.IsUnspecified() && m.yiaddr != cfg.ClientIP {
			t.Fatalf("offered %v", m.yiaddr)
		}
		if len(resp) > replyLimit(&q) && len(resp) > minMessage {
			t.Fatalf("%d bytes for a limit of %d", len(resp), replyLimit(&q))
		}
		fr, err := AppendFrame(nil, cfg, resp)
		if err != nil {
			t.Fatal(err)
		}
		var p packet.Packet
		if err := packet.Parse(fr, &p); err != nil {
			t.Fatal(err)
		}
		if err := packet.VerifyTransport(fr, &p); err != nil {
			t.Fatal(err)
		}
	})
}
