// Package testutil holds the checks tests share: what a test needs from
// the host, said plainly when it is missing.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequiresRoot skips t unless it runs as root.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: azoted's socket is root-only and instances run QEMU with a memfd backend")
	}
}

// RequiresCommand skips t unless name is on PATH; pkg is the Debian
// package that provides it.
func RequiresCommand(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("needs %s (Debian package %s); run scripts/test.sh to install it", name, pkg)
	}
}
