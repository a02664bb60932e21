package kvmhost

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Require fails t when the test host cannot run here because QEMU is
// missing — unless outside CI, where it skips t and says what to install.
// In CI (CI=true) scripts/test.sh installs QEMU, so a missing one is a
// broken setup, and a test that needs KVM is never skipped.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(QEMU); err == nil {
		return
	}
	msg := "needs " + QEMU + " to boot the KVM test host (apt-get install --no-install-recommends qemu-system-x86; scripts/test.sh installs it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// RunTest builds the tests of pkg (a package path as go test takes it;
// "." is the calling test's own package) with CGO_ENABLED=0, runs those
// matching runPattern inside a test host with -test.v, logs their output
// into t line by line as it arrives, and fails t if they fail. The test
// host's console goes into t only when something failed.
//
// The tests run inside have AZOTE_KVM=kvmhost, so Direct reports true
// there: a test that calls RunTest when !Direct() runs its body inside.
func RunTest(t *testing.T, pkg, runPattern string) {
	t.Helper()
	if Inside() {
		t.Fatal("kvmhost.RunTest inside a test host: the test would start another test host; call it only when !kvmhost.Direct()")
	}
	Require(t)
	ctx := t.Context()
	timeout := DefaultTimeout
	if dl, ok := t.Deadline(); ok {
		// Leave time to report: the binary inside panics with every
		// goroutine's stack at its own deadline, before Run's.
		timeout = min(timeout, time.Until(dl)-30*time.Second)
		if timeout < time.Minute {
			t.Fatalf("kvmhost: %v left before the test deadline; a test host needs minutes under TCG (go test -timeout)", time.Until(dl).Round(time.Second))
		}
	}
	name, err := testBinaryName(ctx, pkg)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), name)
	t0 := time.Now()
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("kvmhost: go test -c %s: %v\n%s", pkg, err, out)
	}
	t.Logf("kvmhost: built %s in %v; running %s -test.run %q in the KVM test host", name, time.Since(t0).Round(time.Millisecond), name, runPattern)

	out := &lineLogger{t: t, prefix: "  | "}
	inner := timeout - time.Minute // the build and the boot fit in a minute
	res, err := Run(ctx, Options{
		Binaries: []string{bin},
		Command:  []string{name, "-test.v", "-test.run", runPattern, "-test.timeout", inner.String()},
		Timeout:  timeout,
		Output:   out,
	})
	out.flush()
	if err != nil {
		t.Fatalf("kvmhost: %v", err)
	}
	t.Logf("kvmhost: %s exited with status %d; test host booted in %v, whole run %v",
		name, res.ExitCode, res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	if res.ExitCode != 0 {
		t.Errorf("kvmhost: %s failed inside the KVM test host (exit status %d)\n--- test host console (end) ---\n%s",
			name, res.ExitCode, lastBytes(res.Console, 8<<10))
	}
}

// testBinaryName is the name go test -c gives pkg's test binary.
func testBinaryName(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-f", "{{.Name}}", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("kvmhost: go list %s: %w", pkg, err)
	}
	return strings.TrimSpace(string(out)) + ".test", nil
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// lineLogger writes whole lines to t.Log, as they complete.
type lineLogger struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Log(l.prefix + string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// flush logs a last line that had no newline.
func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}
