package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/sandbox"
)

// procStatus returns the lines of /proc/PID/status by name.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// fileSizeLimit returns the soft and hard RLIMIT_FSIZE of pid, in MiB
// ("soft/hard", "unlimited" for no limit).
func fileSizeLimit(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Max file size"); ok {
			f := strings.Fields(rest)
			for i := range f[:2] {
				if n, err := strconv.ParseInt(f[i], 10, 64); err == nil {
					f[i] = strconv.FormatInt(n>>20, 10) + "M"
				}
			}
			return f[0] + "/" + f[1]
		}
	}
	t.Fatalf("no file size limit in /proc/%d/limits", pid)
	return ""
}

// ownUID checks that pid runs under one uid (real, effective, saved, fs),
// the gid of the same number, from azoted's range, and returns it.
func ownUID(t *testing.T, what string, pid int) int {
	t.Helper()
	st := procStatus(t, pid)
	uids, gids := strings.Fields(st["Uid"]), strings.Fields(st["Gid"])
	if len(uids) != 4 || len(gids) != 4 {
		t.Fatalf("%s (pid %d): Uid %q Gid %q", what, pid, st["Uid"], st["Gid"])
	}
	for i := range uids {
		if uids[i] != uids[0] || gids[i] != uids[0] {
			t.Fatalf("%s (pid %d) does not run under one id of its own: Uid %q Gid %q", what, pid, st["Uid"], st["Gid"])
		}
	}
	uid, _ := strconv.Atoi(uids[0])
	r, _ := sandbox.ParseRange(sandbox.DefaultRange)
	if !r.Contains(uid) {
		t.Fatalf("%s (pid %d) runs as uid %d, outside the range %s", what, pid, uid, r)
	}
	return uid
}

// TestProcessIdentities: every card and every engine runs as a uid of its
// own, none of them root, and stays so across an azoted restart; an
// engine has no capabilities and cannot read the host key or the state;
// a root process that is not azoted gets no key from an instance-store
// card (regressions: every card ran as nobody, QEMU as root, the key
// escrow answered any root peer).
func TestProcessIdentities(t *testing.T) {
	h := setup(t)
	var pers, eph api.Volume
	h.okJSON(t, &pers, "volume", "create", "--size", "16M", "--kind", "persistent")
	h.okJSON(t, &eph, "volume", "create", "--size", "16M", "--kind", "instance-store")
	t.Cleanup(func() { h.azote("volume", "delete", pers.ID, "--now") })
	inst := h.run(t, "ids", 1, 256, "--volume", pers.ID, "--volume", eph.ID)

	seen := map[int]string{}
	distinct := func(what string, uid int) {
		t.Helper()
		if other, ok := seen[uid]; ok {
			t.Errorf("%s and %s share uid %d", what, other, uid)
		}
		seen[uid] = what
	}
	engineUID := ownUID(t, "engine", inst.PID)
	distinct("engine of "+inst.ID, engineUID)
	for _, v := range inst.Volumes {
		distinct("card of "+v.VolumeID, ownUID(t, "card", v.CardPID))
		// No file the card writes can grow past the larger of its
		// volume's size (16 MiB) and its log room (64 × the default
		// --log-limit of 1 MiB).
		if lim := fileSizeLimit(t, v.CardPID); lim != "64M/64M" {
			t.Errorf("card of %s: file size limit %s, want 64M/64M", v.VolumeID, lim)
		}
	}

	// The engine: no capabilities, no way to gain any, and its uid opens
	// nothing of azoted's.
	st := procStatus(t, inst.PID)
	for k, want := range map[string]string{"CapInh": "0000000000000000", "CapPrm": "0000000000000000",
		"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1"} {
		if st[k] != want {
			t.Errorf("engine %s: %q, want %q", k, st[k], want)
		}
	}
	for _, f := range []string{"host.key", "state.db", filepath.Join("volumes", pers.ID+".img"), filepath.Join("instances", inst.ID, "console.log")} {
		cmd := exec.Command("cat", filepath.Join(h.state, f))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(engineUID), Gid: uint32(engineUID)}}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("the engine's uid %d read %s (%d bytes)", engineUID, f, len(out))
		}
	}

	// The key escrow: root, but not azoted.
	c, err := net.Dial("unix", filepath.Join(h.state, "instances", inst.ID, eph.ID+".key.sock"))
	if err != nil {
		t.Fatalf("key socket: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.(*net.UnixConn).CloseWrite()
	got, _ := io.ReadAll(c)
	c.Close()
	if len(got) != 0 {
		t.Errorf("a root process that is not azoted got %d bytes from the key escrow", len(got))
	}

	// After an azoted restart the ids of the live processes stay theirs:
	// a new launch gets others.
	h.killAzoted(t)
	if err := h.startAzoted(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h.azotedLog(), "could not recover the instance-store key") {
		t.Error("the restarted azoted could not get the instance-store key back from its card")
	}
	var pers2 api.Volume
	h.okJSON(t, &pers2, "volume", "create", "--size", "16M", "--kind", "persistent")
	t.Cleanup(func() { h.azote("volume", "delete", pers2.ID, "--now") })
	inst2 := h.run(t, "ids2", 1, 256, "--volume", pers2.ID)
	distinct("engine of "+inst2.ID, ownUID(t, "engine", inst2.PID))
	distinct("card of "+pers2.ID, ownUID(t, "card", inst2.Volumes[0].CardPID))
	if got := h.describe(t, inst.ID); got.PID != inst.PID || ownUID(t, "engine", inst.PID) != engineUID {
		t.Errorf("the first engine changed across the restart: pid %d", got.PID)
	}
}
