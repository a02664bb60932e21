package encap

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"testing"
)

// The encapsulation beside raw AES-256-GCM from crypto/cipher on the same
// frame sizes: the difference is the header, the key lookup and the
// replay window. Run:
//
//	go test -run '^$' -bench . -benchmem ./internal/cards/net/encap
var benchSizes = []int{64, 1500}

func BenchmarkSeal(b *testing.B) {
	k := newRing(b, 1, 1)
	for _, mode := range []string{"aes-gcm", "plaintext"} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				s := NewPlaintextSender(testVPC, ifaceA)
				if mode == "aes-gcm" {
					s = newSender(b, k, ifaceA)
				}
				buf := make([]byte, HeaderLen+n+TagLen)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Seal(buf[:0], ifaceB, buf[HeaderLen:HeaderLen+n]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSealParallel seals from several goroutines through one Sender,
// as the queues of a card do, sharing its counter.
func BenchmarkSealParallel(b *testing.B) {
	k := newRing(b, 1, 1)
	s := newSender(b, k, ifaceA)
	const n = 1500
	b.SetBytes(n)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, HeaderLen+n+TagLen)
		for pb.Next() {
			if _, err := s.Seal(buf[:0], ifaceB, buf[HeaderLen:HeaderLen+n]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	k := newRing(b, 1, 1)
	for _, mode := range []string{"aes-gcm", "plaintext"} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				s, r := NewPlaintextSender(testVPC, ifaceA), NewPlaintextReceiver(testVPC, ifaceB)
				if mode == "aes-gcm" {
					s, r = newSender(b, k, ifaceA), newReceiver(b, k, ifaceB, 0)
				}
				// Packets are sealed in batches with the timer stopped:
				// each opens once.
				const batch = 1024
				bufs := make([][]byte, batch)
				for i := range bufs {
					bufs[i] = make([]byte, HeaderLen+n+TagLen)
				}
				pkts := make([][]byte, batch)
				refill := func() {
					for i, buf := range bufs {
						p, err := s.Seal(buf[:0], ifaceB, buf[HeaderLen:HeaderLen+n])
						if err != nil {
							b.Fatal(err)
						}
						pkts[i] = p
					}
				}
				refill()
				b.SetBytes(int64(n))
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				for range b.N {
					if i == batch {
						b.StopTimer()
						refill()
						i = 0
						b.StartTimer()
					}
					if _, _, err := r.Open(pkts[i]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkAESGCM is the floor: crypto/cipher's AES-256-GCM sealing and
// opening the same sizes with a 36-byte additional data, in place.
func BenchmarkAESGCM(b *testing.B) {
	block, err := aes.NewCipher(testKey(3))
	if err != nil {
		b.Fatal(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range benchSizes {
		buf := make([]byte, HeaderLen+n+TagLen)
		aad, nonce := buf[:HeaderLen], buf[HeaderLen-12:HeaderLen]
		b.Run(fmt.Sprintf("seal/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			var ctr uint64
			for b.Loop() {
				ctr++
				binary.BigEndian.PutUint64(nonce[4:], ctr)
				g.Seal(buf[HeaderLen:HeaderLen], nonce, buf[HeaderLen:HeaderLen+n], aad)
			}
		})
		b.Run(fmt.Sprintf("open/%d", n), func(b *testing.B) {
			ct := g.Seal(nil, nonce, make([]byte, n), aad)
			out := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.Open(out[:0], nonce, ct, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
