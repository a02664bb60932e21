//go:build amd64 && !purego

package xts

import "golang.org/x/sys/cpu"

// hasAsm reports whether the CPU can run the assembly (AES-NI; the tweak
// arithmetic only needs SSE2, which every amd64 CPU has).
var hasAsm = cpu.X86.HasAES

// useAsm selects the assembly implementation; tests flip it to exercise the
// portable code on the same machine.
var useAsm = hasAsm

// encryptSectorsAsm encrypts nsectors sectors of blocks 16-byte blocks each,
// numbered from sector, from src to dst (which may be equal). ek1 and ek2 are
// the K1 and K2 encryption schedules.
//
//go:noescape
func encryptSectorsAsm(ek1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64)

// decryptSectorsAsm is the inverse; dk1 is the K1 decryption schedule and ek2
// the K2 encryption schedule.
//
//go:noescape
func decryptSectorsAsm(dk1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64)

// hasVAES reports whether the CPU can run the 256-bit VAES code, which also
// uses AVX-512F/VL encodings (registers Y16-Y31, VPTERNLOGQ) but no 512-bit
// registers. golang.org/x/sys/cpu reports VAES only where the OS enables
// AVX-512, so this is Ice Lake, Zen 4 and later; other CPUs with AES-NI use
// the 128-bit code.
var hasVAES = hasAsm && cpu.X86.HasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL &&
	cpu.X86.HasAVX512VAES

// useVAES selects the VAES code when useAsm is set; tests flip it.
var useVAES = hasVAES

// encryptSectorsVAES is encryptSectorsAsm with sixteen blocks in flight in
// YMM registers.
//
//go:noescape
func encryptSectorsVAES(ek1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64)

// decryptSectorsVAES is decryptSectorsAsm with sixteen blocks in flight in
// YMM registers.
//
//go:noescape
func decryptSectorsVAES(dk1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64)
