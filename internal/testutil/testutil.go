// Package testutil holds what tests share: the checks for what a test
// needs from the host, said plainly when it is missing, and a settable
// clock.
package testutil

import (
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
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

// Clock is a settable time source for code that takes a Now function;
// safe for concurrent use, since concurrency tests read it from many
// goroutines.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
