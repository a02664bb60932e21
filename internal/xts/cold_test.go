package xts

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// The cold benchmarks read their source out of a 1 GiB buffer, far from
// the CPU caches, as the blk card reads the page cache of a volume: random
// 4 KiB pages and sequential 1 MiB runs, decrypted (or copied, for
// comparison) into a small destination.

var cold = sync.OnceValue(func() []byte {
	b := make([]byte, 1<<30)
	for i := 0; i < len(b); i += 4096 {
		b[i] = byte(i >> 12) // a real page each, not the shared zero page
	}
	return b
})

func benchCold(b *testing.B, n int, random bool, decrypt bool) {
	src := cold()
	c := mustNew(b, benchKey())
	dst := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	b.SetBytes(int64(n))
	off := 0
	for b.Loop() {
		if random {
			off = r.IntN(len(src)/n) * n
		} else {
			off = (off + n) % len(src)
		}
		if decrypt {
			c.DecryptSectors(dst, src[off:off+n], uint64(off/512), 512)
		} else {
			copy(dst, src[off:off+n])
		}
	}
}

func BenchmarkColdDecrypt4K(b *testing.B) { benchCold(b, 4096, true, true) }
func BenchmarkColdCopy4K(b *testing.B)    { benchCold(b, 4096, true, false) }
func BenchmarkColdDecrypt1M(b *testing.B) { benchCold(b, 1<<20, false, true) }
func BenchmarkColdCopy1M(b *testing.B)    { benchCold(b, 1<<20, false, false) }
