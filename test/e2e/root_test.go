package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/testutil"
)

// TestRootVolume makes a persistent, encrypted volume from an image, boots
// it as the root filesystem (ext4), and checks that what the guest wrote
// to / is still there after stop and start.
func TestRootVolume(t *testing.T) {
	h := setup(t)
	testutil.RequiresCommand(t, "mke2fs", "e2fsprogs")
	if r := h.azote("image", "build", "--name", "roottest", "--agent", filepath.Join(h.bin, "azote-agent"), "--script", "testdata/root.sh"); r.code != 0 {
		t.Fatalf("image build: %s", r.stderr)
	}
	var vol api.Volume
	h.okJSON(t, &vol, "volume", "create", "--size", "128M", "--image", "roottest", "--name", "e2e-root")
	t.Cleanup(func() { h.azote("volume", "delete", vol.ID, "--now") })
	if vol.SourceImage == "" || !vol.Encrypted {
		t.Fatalf("root volume: %+v", vol)
	}
	inst := h.run(t, "rootvm", 1, 256, "--image", "roottest", "--root-volume", vol.ID)
	if inst.Agent == nil || inst.Agent.Root != "/dev/vda" {
		t.Fatalf("agent report: %+v", inst.Agent)
	}
	re := regexp.MustCompile(`root-test: boots=\d+ fs=[^\r\n]*`)
	lines := h.waitConsole(t, inst.ID, re, 1)
	if lines[0] != "root-test: boots=1 fs=/dev/vda,ext4" {
		t.Fatalf("first boot: %q", lines[0])
	}
	h.ok(t, "instance", "stop", inst.ID)
	// The root volume stays /dev/vda: it cannot be detached.
	if r := h.azote("volume", "detach", vol.ID); r.code == 0 || !strings.Contains(r.stderr, "root volume") {
		t.Fatalf("detaching the root volume: exit %d, %s", r.code, r.stderr)
	}
	h.ok(t, "instance", "start", inst.ID)
	lines = h.waitConsole(t, inst.ID, re, 2)
	if !strings.HasPrefix(lines[1], "root-test: boots=2 ") {
		t.Fatalf("after stop/start the root filesystem forgot the first boot: %q", lines)
	}
}
