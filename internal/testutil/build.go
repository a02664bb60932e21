package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

var (
	builtMu sync.Mutex
	built   = map[string]string{} // package → binary, once per test process
)

// Binary builds the command pkg (CGO_ENABLED=0) once per test process and
// returns its path; tests that run the real azote-card share it.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "azote-test-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, path.Base(pkg))
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatal(fmt.Errorf("build %s: %v\n%s", pkg, err, out))
	}
	built[pkg] = bin
	return bin
}

// CardBinary is Binary of cmd/azote-card.
func CardBinary(t testing.TB) string { return Binary(t, "github.com/azote/azote/cmd/azote-card") }
