package imds

import (
	"errors"
	"testing"
	"time"

	"github.com/azote/azote/internal/cards/net/packet"
)

// FuzzParseRequest: any bytes parse to a request, ask for more or are
// refused; a request parsed is answered without a panic.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(tokenRequest("21600", "")))
	f.Add([]byte(get("/latest/meta-data/iam/security-credentials/app-role", "tok")))
	f.Add([]byte("GET / HTTP/1.0\nConnection: keep-alive\n\n"))
	f.Add([]byte("PUT /latest/api/token HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET /latest/../ HTTP/1.1\r\nX-Forwarded-For: a\r\n\r\n"))
	s, _ := newTestService(f, testMetadata(), 0, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseRequest(b)
		switch {
		case err == nil:
			if n <= 0 || n > len(b) {
				t.Fatalf("took %d of %d bytes", n, len(b))
			}
			resp := s.Serve(s.Data(), &r)
			AppendResponse(nil, &resp, r.Close, time.Now())
		case errors.Is(err, ErrIncomplete):
			if len(b) >= MaxHeader+MaxBody {
				t.Fatalf("%d bytes still incomplete", len(b))
			}
		case !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge):
			t.Fatalf("error %v", err)
		}
	})
}

// FuzzStack: any sequence of segments (flags, numbers, options, data)
// into the responder, with the timer running, leaves it within its
// bounds and every frame it sends well formed.
func FuzzStack(f *testing.F) {
	f.Add([]byte{packet.TCPFlagSYN, 0, 0, 0, 0, 4, 2, 4, 0, 100}, []byte(tokenRequest("60", "")))
	f.Add([]byte{packet.TCPFlagACK, 1, 2, 3, 4, 0, packet.TCPFlagFIN | packet.TCPFlagACK, 0, 0, 0, 1, 0}, []byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, script []byte, data []byte) {
		g := newGuest(t, testMetadata())
		var isn uint32
		synAcked := false
		for len(script) >= 6 {
			flags := script[0]
			delta := uint32(script[1])<<8 | uint32(script[2])
			nopt := int(script[5] % 12)
			script = script[6:]
			opts := make([]byte, (nopt+3)/4*4)
			copy(opts, script[:min(nopt, len(script))])
			script = script[min(nopt, len(script)):]
			port := uint16(40000 + int(delta%3))
			payload := data
			if int(delta) < len(data) {
				payload = data[:delta]
			}
			// Follow the service's sequence numbers most of the time, so
			// that the fuzzer gets past the handshake.
			segs := g.take(0xff)
			for _, s := range segs {
				if s.p.TCPFlags&packet.TCPFlagSYN != 0 {
					isn, synAcked = s.p.Seq, true
				}
			}
			ack := isn + 1 + delta%4096
			if !synAcked {
				ack = delta
			}
			g.deliver(g.frame(port, 1+delta%64, ack, flags, opts, payload))
			if delta%7 == 0 {
				g.clk.add(time.Duration(delta) * time.Millisecond)
				g.st.mu.Lock()
				g.st.tickLocked(g.clk.now())
				g.st.mu.Unlock()
			}
			g.st.mu.Lock()
			for _, c := range g.st.conns {
				if len(c.in) > maxIn || len(c.out) > outRoom+64<<10 || int(c.sndNxt-c.sndUna) > len(c.out)+2 {
					t.Fatalf("a connection out of bounds: in %d out %d in flight %d", len(c.in), len(c.out), c.sndNxt-c.sndUna)
				}
			}
			if len(g.st.conns) > MaxConns {
				t.Fatalf("%d connections", len(g.st.conns))
			}
			g.st.mu.Unlock()
		}
	})
}
