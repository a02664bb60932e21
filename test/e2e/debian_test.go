package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/testutil"
)

var (
	debianOnce sync.Once
	debianErr  error
)

// debianImage builds the image "debian" (azote image build --distro
// debian) once per run. Its .debs stay in the CLI's cache
// (/var/cache/azote/debootstrap), so a later run downloads nothing.
func (h *harness) debianImage(t *testing.T) {
	t.Helper()
	testutil.RequiresCommand(t, "debootstrap", "debootstrap")
	testutil.RequiresCommand(t, "mke2fs", "e2fsprogs")
	debianOnce.Do(func() {
		start := time.Now()
		r := runCLI(filepath.Join(h.bin, "azote"), []string{"AZOTE_SOCKET=" + h.socket}, nil, 20*time.Minute,
			"image", "build", "--name", "debian", "--distro", "debian", "--agent", filepath.Join(h.bin, "azote-agent"))
		if r.code != 0 {
			debianErr = fmt.Errorf("image build --distro debian: exit %d: %s", r.code, r.stderr)
			return
		}
		t.Logf("Debian image built in %.0f s:\n%s", time.Since(start).Seconds(), r.stderr)
	})
	if debianErr != nil {
		t.Fatal(debianErr)
	}
}

// TestDebianBoot boots the Debian image from an encrypted root volume:
// kernel → initramfs agent (modules, mount /dev/vda, switch root) →
// systemd → azote-agent.service, whose ready report marks the instance
// running; the guest's SSH host keys reach the console as report lines
// and as EC2's fingerprint block.
func TestDebianBoot(t *testing.T) {
	h := setup(t)
	h.debianImage(t)
	var img api.Image
	h.okJSON(t, &img, "image", "describe", "debian")
	if img.RootfsSHA384 == "" || img.RootfsSize == 0 {
		t.Fatalf("the Debian image has no root filesystem archive: %+v", img)
	}
	var vol api.Volume
	h.okJSON(t, &vol, "volume", "create", "--size", "1G", "--image", "debian", "--name", "e2e-debian")
	t.Cleanup(func() { h.azote("volume", "delete", vol.ID, "--now") })
	if !vol.Encrypted || vol.SourceImage != img.ID {
		t.Fatalf("root volume: %+v", vol)
	}
	start := time.Now()
	inst := h.run(t, "debvm", 1, 512, "--image", "debian", "--root-volume", vol.ID, "--timeout", "8m")
	wall := time.Since(start)
	if inst.State != "running" || inst.Agent == nil || inst.Agent.Root != "/dev/vda" || inst.Agent.Instance != inst.ID {
		t.Fatalf("instance %s: state %s, agent %+v", inst.ID, inst.State, inst.Agent)
	}
	t.Logf("Debian guest %s ready: ready_ms=%d (kernel start to azote-agent.service ready), %.1f s from instance run to running, engine %s/%s",
		inst.ID, inst.Agent.ReadyMs, wall.Seconds(), inst.Engine, inst.Accel)

	re := regexp.MustCompile(`azote-agent:1 event=hostkey msg=(ssh-ed25519|ecdsa-sha2-nistp256) [A-Za-z0-9+/]+=*`)
	keys := h.waitConsole(t, inst.ID, re, 2)
	if !strings.Contains(keys[0], "ssh-ed25519 ") || !strings.Contains(keys[1], "ecdsa-sha2-nistp256 ") {
		t.Fatalf("host key report lines: %q", keys)
	}
	console := h.ok(t, "instance", "console", inst.ID, "--tail", "1000000")
	for _, want := range []string{"-----BEGIN SSH HOST KEY FINGERPRINTS-----", "-----END SSH HOST KEY FINGERPRINTS-----", "(ED25519)", "(ECDSA)"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	// systemd is PID 1: its own console lines, and the agent's unit.
	if !strings.Contains(console, "systemd") || strings.Contains(console, "event=error") {
		t.Errorf("console of a systemd boot without agent errors expected:\n%s", console)
	}
	// A stop goes through the control port to systemctl poweroff.
	h.ok(t, "instance", "stop", inst.ID)
	if got := h.describe(t, inst.ID); got.State != "stopped" {
		t.Fatalf("after stop: %s (%s)", got.State, got.StateReason)
	}
}

// TestDebianSSH logs in to a Debian guest with an imported key pair
// through `azote instance ssh`, the key reaching sshd only through the
// metadata service (AuthorizedKeysCommand), finds that the user data ran
// once across a reboot, and runs a command as the image's user through
// the agent.
func TestDebianSSH(t *testing.T) {
	h := setup(t)
	testutil.RequiresCommand(t, "ssh", "openssh-client")
	testutil.RequiresCommand(t, "ssh-keygen", "openssh-client")
	h.debianImage(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	h.ok(t, "key-pair", "import", "--key-name", "e2e-debian", "--public-key-material", "file://"+key+".pub")
	t.Cleanup(func() { h.azote("key-pair", "delete", "e2e-debian") })
	// The host reaches the guest through the VPC's host gateway.
	var vpc api.VPC
	h.okJSON(t, &vpc, "vpc", "create", "--cidr", "10.9.0.0/16", "--name", "deb-vpc", "--host-gateway")
	gatewayTap(t, vpc)
	h.ok(t, "subnet", "create", "--vpc", "deb-vpc", "--cidr", "10.9.1.0/24", "--name", "deb-sub")
	var vol api.Volume
	h.okJSON(t, &vol, "volume", "create", "--size", "1G", "--image", "debian", "--name", "e2e-debian-ssh")
	// The user data appends a line at each run: once, across a reboot.
	userData := filepath.Join(dir, "user-data")
	os.WriteFile(userData, []byte("#!/bin/sh\necho user-data-ran >> /var/tmp/user-data-runs\n"), 0o600)
	inst := h.run(t, "debssh", 1, 512, "--image", "debian", "--root-volume", vol.ID, "--subnet", "deb-sub",
		"--key-name", "e2e-debian", "--user-data", "file://"+userData, "--timeout", "8m")
	ssh := func(args ...string) string {
		t.Helper()
		var out, errs string
		// sshd starts after the agent reported ready; give it a moment.
		waitUntil(t, time.Minute, "ssh into the guest", func() bool {
			r := h.azote(append([]string{"instance", "ssh", inst.ID, "--identity", key, "--", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"}, args...)...)
			out, errs = r.stdout, r.stderr
			return r.code == 0
		}, func() string { return "ssh: " + errs + "\nazoted:\n" + h.azotedLog() })
		return out
	}
	if out := ssh("sudo", "cat", "/var/tmp/user-data-runs"); strings.TrimSpace(out) != "user-data-ran" {
		t.Fatalf("after the first boot the user data ran: %q", out)
	}
	// A stranger's key is refused: only the instance's key pair is
	// authorised (AuthorizedKeysCommand asks the metadata service).
	other := filepath.Join(dir, "other")
	exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).Run()
	if r := h.azote("instance", "ssh", inst.ID, "--identity", other, "--", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "true"); r.code == 0 {
		t.Fatalf("ssh with a key that is not the instance's was let in")
	}
	// exec runs as the image's user, through the agent, not the network.
	if out := h.ok(t, "instance", "exec", inst.ID, "--user", "admin", "--", "id", "-un"); strings.TrimSpace(out) != "admin" {
		t.Fatalf("exec --user admin ran as %q", out)
	}
	// console --interactive: a login shell on a pty through the agent. The
	// test's stdin is a pipe, so the CLI leaves the terminal mode alone;
	// the pty echoes the input, so the checks look for what only the
	// shell's evaluation prints.
	r := runCLI(filepath.Join(h.bin, "azote"), []string{"AZOTE_SOCKET=" + h.socket},
		strings.NewReader("echo user-$(id -un) marker-$((6*7))\nexit 0\n"), time.Minute,
		"instance", "console", inst.ID, "--interactive", "--user", "admin")
	if r.code != 0 || !strings.Contains(r.stdout, "user-admin marker-42") {
		t.Fatalf("console --interactive: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	h.ok(t, "instance", "reboot", inst.ID)
	h.waitFor(t, inst.ID, "ready after the reboot", func(i api.Instance) bool { return i.Ready && i.BootCount >= inst.BootCount+1 })
	if out := ssh("sudo", "cat", "/var/tmp/user-data-runs"); strings.TrimSpace(out) != "user-data-ran" {
		t.Fatalf("after a reboot the user data had run: %q, want once", out)
	}
	h.ok(t, "instance", "terminate", inst.ID)
	h.waitFor(t, inst.ID, "terminated", func(i api.Instance) bool { return i.State == api.StateTerminated })
	h.ok(t, "vpc", "modify", "deb-vpc", "--host-gateway=false")
}

// TestDebianBuildCancelled interrupts `azote image build --distro debian`
// (Ctrl-C) while debootstrap works: the command says so and fails, no
// image is made, and the build's temporary tree (with whatever debootstrap
// had mounted in it) is gone.
func TestDebianBuildCancelled(t *testing.T) {
	h := setup(t)
	h.debianImage(t)            // the .debs are in the cache: the stages come quickly
	cache := "/var/cache/azote" // the CLI's default cache when run as root
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.bin, "azote"), "image", "build", "--name", "deb-cancelled",
		"--distro", "debian", "--agent", filepath.Join(h.bin, "azote-agent"))
	cmd.Env = cliEnv("AZOTE_SOCKET=" + h.socket)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stderr)
	interrupted := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		// Well inside debootstrap: packages are being unpacked in the
		// chroot it set up.
		if !interrupted && strings.Contains(sc.Text(), "debootstrap: unpacking") {
			cmd.Process.Signal(os.Interrupt)
			interrupted = true
		}
	}
	err = cmd.Wait()
	out := strings.Join(lines, "\n")
	if !interrupted {
		t.Fatalf("the build never reached debootstrap's unpacking stage (exit %v):\n%s", err, out)
	}
	if err == nil || !strings.Contains(out, "cancelled before anything was uploaded") {
		t.Fatalf("an interrupted build: exit %v, output:\n%s", err, out)
	}
	h.fails(t, api.CodeImageNotFound, "image", "describe", "deb-cancelled")
	if left, _ := filepath.Glob(filepath.Join(cache, "debian-build-*")); len(left) > 0 {
		t.Errorf("the cancelled build left %q", left)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), "debian-build-") {
		t.Errorf("mounts left under the build's tree:\n%s", mounts)
	}
}
