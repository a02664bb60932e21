package material

import (
	"sync"
	"testing"
)

var allSpecs = []Spec{SymmetricDefault, HMAC224, HMAC256, HMAC384, HMAC512,
	RSA2048, RSA3072, RSA4096, ECCNISTP256, ECCNISTP384, ECCNISTP521}

var asymSpecs = []Spec{RSA2048, RSA3072, RSA4096, ECCNISTP256, ECCNISTP384, ECCNISTP521}

var rsaSpecs = []Spec{RSA2048, RSA3072, RSA4096}

var (
	materialMu sync.Mutex
	materials  = map[Spec][]byte{}
)

// testMaterial is Generate(s), made once per test binary: RSA-4096 takes
// seconds to generate, and most tests only need some key of the spec.
func testMaterial(t testing.TB, s Spec) []byte {
	t.Helper()
	materialMu.Lock()
	defer materialMu.Unlock()
	if m, ok := materials[s]; ok {
		return m
	}
	m, err := Generate(s)
	if err != nil {
		t.Fatalf("Generate(%s): %v", s, err)
	}
	materials[s] = m
	return m
}
