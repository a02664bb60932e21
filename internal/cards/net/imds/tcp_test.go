package imds

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/cards/net/packet"
)

const ackFlag = packet.TCPFlagACK

// A whole IMDSv2 session on one connection: the handshake (the guest's
// MSS respected, ours announced), a token request cut in two segments,
// two GETs kept alive, the answer cut to the MSS, then the close.
func TestStackSession(t *testing.T) {
	md := testMetadata()
	md.UserData = bytes.Repeat([]byte("0123456789abcdef"), 128) // 2 KiB
	g := newGuest(t, md)
	synack := g.connect(100)
	if synack.mss != ourMSS {
		t.Errorf("SYN/ACK MSS option %d", synack.mss)
	}
	req := tokenRequest("21600", "")
	g.send(ackFlag, []byte(req[:10]))
	if segs := g.take(1); len(segs) != 1 || len(segs[0].payload) != 0 || segs[0].p.Ack != g.seq {
		t.Fatalf("half a request: want a bare ACK, got %+v", segs)
	}
	g.send(ackFlag|packet.TCPFlagPSH, []byte(req[10:]))
	ans, _ := g.readAnswer(1)
	if !strings.HasPrefix(ans, "HTTP/1.1 200 OK\r\n") || !strings.Contains(ans, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21600\r\n") {
		t.Fatalf("token answer %q", ans)
	}
	tok := ans[strings.Index(ans, "\r\n\r\n")+4:]

	g.send(ackFlag|packet.TCPFlagPSH, []byte(get("/latest/user-data", tok)))
	ans, segs := g.readAnswer(1)
	if !strings.HasSuffix(ans, string(md.UserData)) || !strings.Contains(ans, "Content-Length: 2048\r\n") {
		t.Fatalf("user data answer %.100q…", ans)
	}
	data := 0
	for _, s := range segs {
		if len(s.payload) > 100 {
			t.Errorf("a segment of %d bytes over the guest's MSS of 100", len(s.payload))
		}
		if len(s.payload) > 0 {
			data++
		}
	}
	if data < 21 {
		t.Errorf("%d data segments for 2 KiB at MSS 100", data)
	}

	// Two pipelined requests in one segment, the second closing.
	g.send(ackFlag|packet.TCPFlagPSH, []byte(get("/latest/meta-data/instance-id", tok)+
		"GET /latest/meta-data/mac HTTP/1.1\r\nX-aws-ec2-metadata-token: "+tok+"\r\nConnection: close\r\n\r\n"))
	ans, segs = g.readAnswer(1)
	if strings.Count(ans, "HTTP/1.1 200 OK") != 2 || !strings.Contains(ans, md.InstanceID) || !strings.HasSuffix(ans, guestMAC.String()) {
		t.Fatalf("pipelined answers %q", ans)
	}
	if segs[len(segs)-1].p.TCPFlags&packet.TCPFlagFIN == 0 {
		t.Fatal("no FIN after Connection: close")
	}
	if n := g.st.Counts().Conns; n != 1 {
		t.Fatalf("%d connections while the guest has not closed", n)
	}
	g.send(packet.TCPFlagFIN|ackFlag, nil)
	if segs := g.take(1); len(segs) != 1 || segs[0].p.TCPFlags != ackFlag || segs[0].p.Ack != g.seq {
		t.Fatalf("the guest's FIN: %+v", segs)
	}
	if n := g.st.Counts().Conns; n != 0 {
		t.Fatalf("%d connections after both FINs", n)
	}
	if c := g.st.svc.Counts(); c[OK] != 4 {
		t.Errorf("outcomes %v", c)
	}
}

// A lost answer is sent again on the timer, and again later, until the
// guest acknowledges it; a guest that never does is reset.
func TestStackRetransmits(t *testing.T) {
	g := newGuest(t, testMetadata())
	g.connect(1460)
	g.send(ackFlag, []byte(tokenRequest("60", "")))
	first := g.take(1)
	if len(first) == 0 || len(first[0].payload) == 0 {
		t.Fatal("no answer")
	}
	tick := func(d time.Duration) []rseg {
		g.clk.add(d)
		g.st.mu.Lock()
		g.st.tickLocked(g.clk.now())
		g.st.mu.Unlock()
		return g.take(1)
	}
	if again := tick(initialRTO / 2); len(again) != 0 {
		t.Fatalf("sent again before the timeout: %+v", again)
	}
	again := tick(initialRTO)
	if len(again) != 1 || again[0].p.Seq != first[0].p.Seq || !bytes.Equal(again[0].payload, first[0].payload) {
		t.Fatalf("not sent again: %+v", again)
	}
	if g.st.Counts().Retransmits != 1 {
		t.Errorf("retransmits %d", g.st.Counts().Retransmits)
	}
	// The backoff doubles: nothing at one more RTO, something at two.
	if again := tick(initialRTO); len(again) != 0 {
		t.Fatalf("no backoff: %+v", again)
	}
	if again := tick(initialRTO * 2); len(again) != 1 {
		t.Fatalf("not sent a third time: %+v", again)
	}
	for range maxRetries + 2 {
		tick(time.Minute)
	}
	if g.st.Counts().Conns != 0 {
		t.Fatal("a guest that never acknowledges keeps its connection")
	}

	// A lost SYN/ACK is sent again too.
	g2 := newGuest(t, testMetadata())
	g2.deliver(g2.frame(g2.port, 1, 0, packet.TCPFlagSYN, nil, nil))
	g2.take(1)
	g2.clk.add(initialRTO)
	g2.st.mu.Lock()
	g2.st.tickLocked(g2.clk.now())
	g2.st.mu.Unlock()
	if segs := g2.take(1); len(segs) != 1 || segs[0].p.TCPFlags != packet.TCPFlagSYN|ackFlag || segs[0].mss != ourMSS {
		t.Fatalf("SYN/ACK not sent again: %+v", segs)
	}
}

// Segments out of order are dropped (and acknowledged as before); the
// guest's retransmission in order is taken, with overlap trimmed.
func TestStackOutOfOrder(t *testing.T) {
	g := newGuest(t, testMetadata())
	g.connect(1460)
	req := []byte(tokenRequest("60", ""))
	g.deliver(g.frame(g.port, g.seq+20, g.ack, ackFlag, nil, req[20:]))
	if segs := g.take(1); len(segs) != 1 || segs[0].p.Ack != g.seq || len(segs[0].payload) != 0 {
		t.Fatalf("out of order: want a duplicate ACK, got %+v", segs)
	}
	g.deliver(g.frame(g.port, g.seq, g.ack, ackFlag, nil, req[:30]))
	g.take(1)
	// The retransmission overlaps the first 30 bytes taken.
	g.deliver(g.frame(g.port, g.seq, g.ack, ackFlag, nil, req))
	g.seq += uint32(len(req))
	if ans, _ := g.readAnswer(1); !strings.HasPrefix(ans, "HTTP/1.1 200 OK") {
		t.Fatalf("answer %q", ans)
	}
}

// RST for what no connection takes; an exact RST closes; the table is
// bounded; a malformed request is answered 400 and closed; the service
// off drops and counts.
func TestStackEdges(t *testing.T) {
	g := newGuest(t, testMetadata())
	g.deliver(g.frame(5555, 1, 777, ackFlag, nil, []byte("x")))
	if segs := g.take(1); len(segs) != 1 || segs[0].p.TCPFlags != packet.TCPFlagRST || segs[0].p.Seq != 777 {
		t.Fatalf("an ACK without a connection: %+v", segs)
	}
	g.deliver(g.frame(5555, 1, 0, packet.TCPFlagFIN, nil, []byte("ab")))
	if segs := g.take(1); len(segs) != 1 || segs[0].p.TCPFlags != packet.TCPFlagRST|ackFlag || segs[0].p.Ack != 4 {
		t.Fatalf("a FIN without a connection: %+v", segs)
	}
	g.deliver(g.frame(5555, 1, 0, packet.TCPFlagRST, nil, nil))
	if segs := g.take(1); len(segs) != 0 {
		t.Fatalf("a RST answered: %+v", segs)
	}

	// The connection table.
	for i := range MaxConns {
		g.deliver(g.frame(uint16(10000+i), 1, 0, packet.TCPFlagSYN, nil, nil))
	}
	if segs := g.take(1); len(segs) != MaxConns {
		t.Fatalf("%d SYN/ACKs for %d SYNs", len(segs), MaxConns)
	}
	g.deliver(g.frame(20000, 1, 0, packet.TCPFlagSYN, nil, nil))
	if segs := g.take(1); len(segs) != 1 || segs[0].p.TCPFlags&packet.TCPFlagRST == 0 {
		t.Fatalf("connection %d: %+v", MaxConns+1, segs)
	}
	if c := g.st.Counts(); c.Refused != 1 || c.Conns != MaxConns {
		t.Fatalf("counts %+v", c)
	}
	// An exact RST frees a place.
	g.deliver(g.frame(10000, 2, 0, packet.TCPFlagRST, nil, nil))
	if c := g.st.Counts(); c.Conns != MaxConns-1 {
		t.Fatalf("after a RST: %d connections", c.Conns)
	}

	// Malformed: 400, then FIN.
	g2 := newGuest(t, testMetadata())
	g2.connect(1460)
	g2.send(ackFlag, []byte("BLAH\r\n\r\n"))
	ans, segs := g2.readAnswer(1)
	if !strings.HasPrefix(ans, "HTTP/1.1 400 Bad Request") || segs[len(segs)-1].p.TCPFlags&packet.TCPFlagFIN == 0 {
		t.Fatalf("malformed: %q", ans)
	}
	// A request that never ends, over the bound: the window closes at
	// it and the connection is closed.
	g3 := newGuest(t, testMetadata())
	g3.connect(1460)
	junk := []byte("GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 1000))
	for range 20 {
		g3.send(ackFlag, junk)
	}
	_, segs = g3.readAnswer(1)
	fin := false
	for _, s := range segs {
		fin = fin || s.p.TCPFlags&packet.TCPFlagFIN != 0
	}
	if !fin {
		t.Fatal("an endless request kept its connection")
	}

	// No metadata: dropped and counted, nothing answered.
	g4 := newGuest(t, nil)
	g4.deliver(g4.frame(1234, 1, 0, packet.TCPFlagSYN, nil, nil))
	if segs := g4.take(1); len(segs) != 0 || g4.st.Counts().Unavailable != 1 || g4.st.Serves() {
		t.Fatalf("without metadata: %+v %+v", segs, g4.st.Counts())
	}

	// A bad checksum is dropped, not answered.
	f := g.frame(3333, 1, 0, packet.TCPFlagSYN, nil, nil)
	f[len(f)-1] ^= 0xff
	g.deliver(f)
	if segs := g.take(1); len(segs) != 0 || g.st.Counts().Dropped != 1 {
		t.Fatalf("a bad checksum: %+v", segs)
	}
}

// The hop limit is the TTL of every answer.
func TestStackHopLimit(t *testing.T) {
	for _, hop := range []int{0, 1, 2, 64} {
		t.Run(fmt.Sprint(hop), func(t *testing.T) {
			md := testMetadata()
			md.HopLimit = hop
			g := newGuest(t, md)
			want := uint8(max(hop, 1))
			g.deliver(g.frame(g.port, 1, 0, packet.TCPFlagSYN, nil, nil))
			if segs := g.take(want); len(segs) != 1 { // take checks the TTL
				t.Fatalf("%+v", segs)
			}
		})
	}
}
