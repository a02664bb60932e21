package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
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

// Main runs a package's tests and then ends every process still running
// a binary Binary built, and removes the binaries: cards outlive the
// azoted that started them by design, so a test that leaves one running
// must not leave it on the machine. A package that runs the real
// binaries calls it from TestMain: os.Exit(testutil.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	builtMu.Lock()
	defer builtMu.Unlock()
	for _, bin := range built {
		killRunning(bin)
		os.RemoveAll(filepath.Dir(bin))
	}
	return code
}

// killRunning kills the processes whose executable is bin.
func killRunning(bin string) {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", p.Name(), "exe")); err == nil && exe == bin {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
