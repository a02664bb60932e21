package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/testutil"
)

type harness struct {
	bin    string // directory with azote, azoted, azote-agent
	state  string
	socket string
	root   string // temp root, removed at the end

	mu     sync.Mutex
	azoted *exec.Cmd
	waited chan struct{}
}

var (
	h        *harness
	setupErr error
	once     sync.Once
)

func TestMain(m *testing.M) {
	code := m.Run()
	if h != nil {
		if leaked := h.shutdown(); leaked != "" {
			fmt.Fprintln(os.Stderr, "e2e: leak check failed:", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// setup returns the shared harness, building and starting it on first use.
// Tests share one azoted and one image; they run one after another.
func setup(t *testing.T) *harness {
	t.Helper()
	testutil.RequiresRoot(t)
	testutil.RequiresCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	testutil.RequiresCommand(t, "apt-get", "apt")
	once.Do(func() { h, setupErr = newHarness() })
	if setupErr != nil {
		t.Fatalf("e2e setup: %v", setupErr)
	}
	return h
}

func newHarness() (*harness, error) {
	root, err := os.MkdirTemp("", "azote-e2e-")
	if err != nil {
		return nil, err
	}
	hh := &harness{bin: filepath.Join(root, "bin"), state: filepath.Join(root, "state"), socket: filepath.Join(root, "azoted.sock"), root: root}
	build := exec.Command("go", "build", "-o", hh.bin+"/", "github.com/azote/azote/cmd/...")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := hh.startAzoted(); err != nil {
		return nil, err
	}
	r := hh.azote("image", "build", "--name", "default", "--agent", filepath.Join(hh.bin, "azote-agent"))
	if r.code != 0 {
		return nil, fmt.Errorf("image build: %s", r.stderr)
	}
	return hh, nil
}

func (h *harness) startAzoted() error {
	log, err := os.OpenFile(filepath.Join(h.root, "azoted.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(h.bin, "azoted"), "--state-dir", h.state, "--socket", h.socket, "--stop-timeout", "20s",
		// Guests reach the API through a VPC's host gateway (imds_test.go):
		// azoted listens on every address, with that gateway's address in
		// its certificate; role sessions are short so that they refresh.
		"--listen", "0.0.0.0:0", "--tls-names", imdsGateway, "--instance-credential-lifetime", imdsCredentialLifetime,
		// volumeKey and the identity test read host.key itself, which
		// auto would seal on a machine with a TPM.
		"--root-key", "file")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	log.Close()
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	h.mu.Lock()
	h.azoted, h.waited = cmd, waited
	h.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if r := h.azote("host", "info"); r.code == 0 {
			return nil
		}
		select {
		case <-waited:
			return fmt.Errorf("azoted exited at start-up; log:\n%s", h.azotedLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("azoted did not answer within 15 s; log:\n%s", h.azotedLog())
}

// killAzoted sends SIGKILL to azoted and waits for it to die.
func (h *harness) killAzoted(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	cmd, waited := h.azoted, h.waited
	h.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill azoted: %v", err)
	}
	<-waited
}

func (h *harness) azotedLog() string {
	b, _ := os.ReadFile(filepath.Join(h.root, "azoted.log"))
	return string(b)
}

type result struct {
	stdout, stderr string
	code           int
}

func (h *harness) azote(args ...string) result {
	return runCLI(filepath.Join(h.bin, "azote"), []string{"AZOTE_SOCKET=" + h.socket}, nil, 4*time.Minute, args...)
}

// cliEnv is the environment the tests run the CLI in: this process's
// without the AWS_* variables (an operator's AWS_CA_BUNDLE, AWS_PROFILE or
// keys would override what a test set up, as they do for aws), and env.
func cliEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// runCLI runs the azote binary with extra environment and stdin.
func runCLI(azote string, env []string, stdin io.Reader, timeout time.Duration, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, azote, args...)
	cmd.Env = cliEnv(env...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		errb.WriteString(err.Error())
	}
	return result{out.String(), errb.String(), code}
}

// ok runs the CLI and fails the test unless it exits 0.
func (h *harness) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := h.azote(args...)
	if r.code != 0 {
		t.Fatalf("azote %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// okJSON runs the CLI with -o json and decodes its output into v.
func (h *harness) okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := h.ok(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("azote %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// fails runs the CLI and checks it exits 1 with the given error code as
// its one-line message.
func (h *harness) fails(t *testing.T, code api.Code, args ...string) string {
	t.Helper()
	r := h.azote(args...)
	if r.code != 1 {
		t.Fatalf("azote %s: exit %d, want 1 (stdout %q, stderr %q)", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	// Progress lines may come first; the error is the last line, and the
	// only one that starts with "azote:".
	want := "azote: " + string(code) + ": "
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if !strings.HasPrefix(lines[len(lines)-1], want) || strings.Count(r.stderr, "azote:") != 1 {
		t.Fatalf("azote %s: stderr %q, want a last line starting %q", strings.Join(args, " "), r.stderr, want)
	}
	return r.stderr
}

func (h *harness) describe(t *testing.T, ref string) api.Instance {
	t.Helper()
	var inst api.Instance
	h.okJSON(t, &inst, "instance", "describe", ref)
	return inst
}

// run launches an instance, waits until its agent is ready, and
// terminates it when the test ends.
func (h *harness) run(t *testing.T, name string, vcpus, memMiB int, extra ...string) api.Instance {
	t.Helper()
	var inst api.Instance
	args := append([]string{"instance", "run", "--name", name, "--vcpus", fmt.Sprint(vcpus), "--memory", fmt.Sprint(memMiB)}, extra...)
	r := h.azote(append(args, "-o", "json")...)
	if r.code != 0 {
		// Show what the guest printed before it is removed.
		if c := h.azote("instance", "console", name, "--tail", "100000"); c.code == 0 {
			t.Logf("console of %s:\n%s", name, c.stdout)
		}
		h.azote("instance", "terminate", name)
		t.Fatalf("azote %s: exit %d: %s", strings.Join(args, " "), r.code, strings.TrimSpace(r.stderr))
	}
	if err := json.Unmarshal([]byte(r.stdout), &inst); err != nil {
		t.Fatalf("azote %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
	t.Cleanup(func() {
		if t.Failed() {
			// What the guest and its cards printed, before terminate
			// removes them.
			if c := h.azote("instance", "console", inst.ID, "--tail", "20000"); c.code == 0 {
				t.Logf("console of %s (tail):\n%s", inst.ID, c.stdout)
			}
			logs, _ := filepath.Glob(filepath.Join(h.state, "instances", inst.ID, "*.card.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", filepath.Base(l), b)
			}
		}
		h.azote("instance", "modify", inst.ID, "--termination-protection=false")
		if r := h.azote("instance", "terminate", inst.ID); r.code != 0 {
			t.Errorf("cleanup: terminate %s: %s", inst.ID, r.stderr)
		}
	})
	return inst
}

// waitFor polls describe until cond holds.
func (h *harness) waitFor(t *testing.T, ref string, what string, cond func(api.Instance) bool) api.Instance {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		inst := h.describe(t, ref)
		if cond(inst) {
			return inst
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s: waited 2 min for %s; now %s (%s)", ref, what, inst.State, inst.StateReason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUntil polls cond until it holds, failing the test after timeout
// with what it waited for and, if show is set, what show returns then.
// Tests wait for the condition they need, never for a fixed time: a
// loaded host makes every fixed time too short some day.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool, show func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if show != nil {
				msg = ":\n" + show()
			}
			t.Fatalf("waited %v for %s%s", timeout, what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshot is what a failed request must not change: the live records,
// the instance directories and the engine processes.
type snapshot struct {
	records, dirs, procs []string
}

func (s snapshot) String() string {
	return fmt.Sprintf("records %v, dirs %v, engine processes %v", s.records, s.dirs, s.procs)
}

func (h *harness) snapshot(t *testing.T) snapshot {
	t.Helper()
	var list []api.Instance
	h.okJSON(t, &list, "instance", "list")
	var s snapshot
	for _, i := range list {
		if i.State != api.StateTerminated {
			s.records = append(s.records, i.ID+"/"+i.State)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(h.state, "instances"))
	for _, e := range ents {
		s.dirs = append(s.dirs, e.Name())
	}
	s.procs = h.engineProcs()
	return s
}

// engineProcs lists processes whose command line mentions the state dir
// (cards) or whose working directory is inside it (engines, which are
// handed their files and name none of them).
func (h *harness) engineProcs() []string {
	var procs []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || bytes.Contains(b, []byte("azoted")) {
			continue
		}
		if cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); !bytes.Contains(b, []byte(h.state+"/")) && !strings.HasPrefix(cwd, h.state+"/") {
			continue
		}
		procs = append(procs, e.Name())
	}
	sort.Strings(procs)
	return procs
}

// pidAlive tells whether pid runs; a zombie (exited, not yet reaped by
// its new parent after azoted died) is not alive.
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z' && b[i+2] != 'X'
}

// shutdown terminates every instance, stops azoted, and reports anything
// left behind.
func (h *harness) shutdown() string {
	var list []api.Instance
	r := h.azote("instance", "list", "-o", "json")
	json.Unmarshal([]byte(r.stdout), &list)
	for _, i := range list {
		if i.State != api.StateTerminated {
			h.azote("instance", "modify", i.ID, "--termination-protection=false")
			h.azote("instance", "terminate", i.ID)
		}
	}
	var leaked []string
	if procs := h.engineProcs(); len(procs) > 0 {
		leaked = append(leaked, fmt.Sprintf("engine processes still running: %v", procs))
		for _, p := range procs {
			var pid int
			fmt.Sscan(p, &pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(h.state, "instances"))
	if len(ents) > 0 {
		leaked = append(leaked, fmt.Sprintf("%d instance directories left", len(ents)))
	}
	h.mu.Lock()
	cmd, waited := h.azoted, h.waited
	h.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		leaked = append(leaked, "azoted ignored SIGTERM")
		cmd.Process.Kill()
	}
	if os.Getenv("AZOTE_E2E_KEEP") == "" && len(leaked) == 0 {
		os.RemoveAll(h.root)
	} else {
		fmt.Fprintf(os.Stderr, "e2e: state kept in %s\n", h.root)
	}
	return strings.Join(leaked, "; ")
}

// gatewayTap is the name of vpc's host-gateway tap, which it removes when
// the test ends, even early: the tap outlives azoted by design (a
// restarted azoted adopts it), and a stale one breaks the routes of later
// runs.
func gatewayTap(t *testing.T, vpc api.VPC) string {
	tap := "azg" + strings.TrimPrefix(vpc.ID, api.VPCIDPrefix)[:12]
	t.Cleanup(func() { exec.Command("ip", "link", "del", tap).Run() })
	return tap
}
