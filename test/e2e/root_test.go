package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/image"
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
	// The filesystem was built by the unprivileged helper, whose root is
	// the --rootfs-uid (default 65533) on the host.
	if log := h.azotedLog(); !strings.Contains(log, `builder_uid_map="0 65533 1"`) {
		t.Errorf("azoted did not log a root filesystem built by uid 65533:\n%s", log)
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

// hostileInitramfs is a gzip'd newc archive with a symlink to target
// followed by a regular file of the same name: the attack of issue 10, in
// which an extractor running as root wrote data to any host path.
func hostileInitramfs(target string, data string) []byte {
	var raw bytes.Buffer
	entry := func(name string, mode uint32, body string) {
		fmt.Fprintf(&raw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(name)+1, 0)
		raw.WriteString(name + "\x00")
		for raw.Len()%4 != 0 {
			raw.WriteByte(0)
		}
		raw.WriteString(body)
		for raw.Len()%4 != 0 {
			raw.WriteByte(0)
		}
	}
	entry("x", 0o120777, target)
	entry("x", 0o100644, data)
	entry("TRAILER!!!", 0, "")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	return gz.Bytes()
}

// TestRootVolumeFromHostileImage uploads an image whose initramfs tries
// to write a host file through a symlink, through the API as any image
// author can, and makes a root volume from it: the archive is refused
// with a clear error, the host file is not written, and nothing is left.
func TestRootVolumeFromHostileImage(t *testing.T) {
	h := setup(t)
	testutil.RequiresCommand(t, "mke2fs", "e2fsprogs")
	victim := filepath.Join(h.root, "cron-victim")
	initrd := hostileInitramfs(victim, "* * * * * root touch /pwned\n")
	kernel := []byte("hostile-test kernel (never booted)")
	c := client.New(h.socket)
	ctx := context.Background()
	for _, b := range [][]byte{kernel, initrd} {
		if err := c.PutBlob(ctx, image.SHA384Hex(b), b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateImage(ctx, api.CreateImageRequest{Name: "hostile", KernelSHA384: image.SHA384Hex(kernel),
		InitrdSHA384: image.SHA384Hex(initrd), Cmdline: "console=ttyS0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.azote("image", "delete", "hostile") })
	r := h.azote("volume", "create", "--size", "64M", "--image", "hostile", "--name", "e2e-hostile")
	if b, err := os.ReadFile(victim); !os.IsNotExist(err) {
		t.Fatalf("the image wrote the host file %s: %q (%v)", victim, b, err)
	}
	want := "azote: " + string(api.CodeInvalidParameter) + ": "
	if r.code != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, `"x" appears twice`) {
		t.Fatalf("volume create from the hostile image: exit %d, stderr %q; want %q and why", r.code, r.stderr, want)
	}
	h.fails(t, api.CodeVolumeNotFound, "volume", "describe", "e2e-hostile")
	if left, _ := filepath.Glob(filepath.Join(h.state, ".rootfs-*")); len(left) != 0 {
		t.Errorf("work directories left: %v", left)
	}
}
