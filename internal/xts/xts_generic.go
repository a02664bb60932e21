//go:build !amd64 || purego

package xts

// No assembly on this platform or build: the portable code is always used.

const (
	hasAsm  = false
	hasVAES = false
)

var (
	useAsm  = false
	useVAES = false
)

func encryptSectorsAsm(ek1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64) {
	panic("xts: assembly implementation not available")
}

func decryptSectorsAsm(dk1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64) {
	panic("xts: assembly implementation not available")
}

func encryptSectorsVAES(ek1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64) {
	panic("xts: assembly implementation not available")
}

func decryptSectorsVAES(dk1, ek2 *schedule, dst, src *byte, nsectors, blocks int, sector uint64) {
	panic("xts: assembly implementation not available")
}
