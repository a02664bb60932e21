package agent

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newFirstBoot(t *testing.T, f *fakeIMDS) (*FirstBoot, *bytes.Buffer) {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	for _, d := range []string{"ssh", "state", "etc"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	var console bytes.Buffer
	return &FirstBoot{
		IMDS: NewIMDS(srv.URL, 2*time.Second), Console: &console, Instance: "i-0123456789abcdef0",
		SSHDir: filepath.Join(dir, "ssh"), StateDir: filepath.Join(dir, "state"), LogPath: filepath.Join(dir, "user-data.log"),
		EtcDir: filepath.Join(dir, "etc"), SetHostname: func(string) error { return nil }, KeyGen: SSHKeygen,
	}, &console
}

func TestUserDataRunsOncePerInstance(t *testing.T) {
	f := &fakeIMDS{values: map[string]string{"user-data": "#!/bin/sh\necho ran >> \"$(dirname \"$0\")/count\"\necho hello from user data\n"}}
	fb, console := newFirstBoot(t, f)
	ctx := context.Background()
	r, ok, err := fb.UserData(ctx)
	if err != nil || !ok || r.Event != EventUserData || r.Message != "exit 0" {
		t.Fatalf("first boot: %+v %v %v", r, ok, err)
	}
	if !strings.Contains(console.String(), "hello from user data") {
		t.Errorf("console: %q", console.String())
	}
	if b, _ := os.ReadFile(fb.LogPath); !strings.Contains(string(b), "hello from user data") {
		t.Errorf("log: %q", b)
	}
	if st, err := os.Stat(filepath.Join(fb.StateDir, "user-data")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("script file: %v %v", st, err)
	}
	// A reboot: the same instance does not run it again.
	if _, ok, err := fb.UserData(ctx); ok || err != nil {
		t.Fatalf("second boot ran it again: %v %v", ok, err)
	}
	if b, _ := os.ReadFile(filepath.Join(fb.StateDir, "count")); string(b) != "ran\n" {
		t.Fatalf("script ran %q", b)
	}
	// A new instance from the same volume (another id) runs it.
	fb.Instance = "i-1111111111111111a"
	if _, ok, err := fb.UserData(ctx); !ok || err != nil {
		t.Fatalf("new instance: %v %v", ok, err)
	}
}

func TestUserDataNotAScriptOrFailing(t *testing.T) {
	f := &fakeIMDS{values: map[string]string{"user-data": "hostname: x\n"}}
	fb, _ := newFirstBoot(t, f)
	r, ok, err := fb.UserData(context.Background())
	if err != nil || !ok || !strings.Contains(r.Message, "not a script") {
		t.Fatalf("%+v %v %v", r, ok, err)
	}
	if _, err := os.Stat(filepath.Join(fb.StateDir, "user-data")); err == nil {
		t.Error("a non-script was written out")
	}
	f2 := &fakeIMDS{values: map[string]string{"user-data": "#!/bin/sh\nexit 3\n"}}
	fb2, _ := newFirstBoot(t, f2)
	if r, _, _ := fb2.UserData(context.Background()); r.Message != "exit status 3" {
		t.Errorf("failing script: %+v", r)
	}
	// No user data: nothing to do, and recorded.
	fb3, _ := newFirstBoot(t, &fakeIMDS{values: map[string]string{}})
	if _, ok, err := fb3.UserData(context.Background()); ok || err != nil {
		t.Errorf("no user data: %v %v", ok, err)
	}
}

func TestUserDataServiceDownIsRetried(t *testing.T) {
	fb, _ := newFirstBoot(t, &fakeIMDS{})
	fb.IMDS.Endpoint = "http://127.0.0.1:1" // nothing listens
	if _, _, err := fb.UserData(context.Background()); err == nil {
		t.Fatal("no error without a metadata service")
	}
	if _, err := os.Stat(filepath.Join(fb.StateDir, "user-data.done")); err == nil {
		t.Fatal("recorded as done although it was never fetched")
	}
}

func TestHostKeysAndReports(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("needs ssh-keygen (openssh-client) to make host keys")
	}
	fb, _ := newFirstBoot(t, &fakeIMDS{})
	pubs, err := fb.HostKeys()
	if err != nil || len(pubs) != 2 || !strings.HasPrefix(pubs[0], "ssh-ed25519 ") || !strings.HasPrefix(pubs[1], "ecdsa-sha2-nistp256 ") {
		t.Fatalf("host keys: %q %v", pubs, err)
	}
	again, err := fb.HostKeys()
	if err != nil || strings.Join(again, "\n") != strings.Join(pubs, "\n") {
		t.Fatalf("existing keys were replaced: %q %v", again, err)
	}
	for _, r := range HostKeyReports(pubs) {
		line := r.Format()
		if len(line) > MaxLineLen {
			t.Fatalf("report of %d bytes", len(line))
		}
		back, err := Parse(line)
		if err != nil || back.Event != EventHostKey || back.Message != r.Message {
			t.Fatalf("round trip of %q: %+v %v", line, back, err)
		}
	}
	block, err := HostKeyBlock(pubs, "ip-10-0-1-10")
	if err != nil {
		t.Fatal(err)
	}
	// The fingerprints are ssh-keygen -l's.
	out, err := exec.Command("ssh-keygen", "-l", "-f", filepath.Join(fb.SSHDir, "ssh_host_ed25519_key.pub")).Output()
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.Fields(string(out))[1]
	for _, want := range []string{
		"-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 " + fp + " root@ip-10-0-1-10 (ED25519)\n",
		"(ECDSA)\n-----END SSH HOST KEY FINGERPRINTS-----\n-----BEGIN SSH HOST KEY KEYS-----\n" + pubs[0] + " root@ip-10-0-1-10\n",
	} {
		if !strings.Contains(block, want) {
			t.Errorf("block lacks %q:\n%s", want, block)
		}
	}
}

func TestHostname(t *testing.T) {
	var set string
	fb, _ := newFirstBoot(t, &fakeIMDS{values: map[string]string{"meta-data/hostname": "IP-10-0-1-10.azote.internal\n"}})
	fb.SetHostname = func(s string) error { set = s; return nil }
	name, err := fb.Hostname(context.Background(), "i-0123")
	if err != nil || name != "ip-10-0-1-10.azote.internal" || set != name {
		t.Fatalf("hostname %q (set %q) %v", name, set, err)
	}
	hosts, _ := os.ReadFile(filepath.Join(fb.EtcDir, "hosts"))
	if !strings.Contains(string(hosts), "127.0.1.1\tip-10-0-1-10.azote.internal ip-10-0-1-10\n") {
		t.Errorf("hosts: %q", hosts)
	}
	// A hostile name is refused and nothing is set.
	fb2, _ := newFirstBoot(t, &fakeIMDS{values: map[string]string{"meta-data/hostname": "a;rm -rf /"}})
	set = ""
	fb2.SetHostname = func(s string) error { set = s; return nil }
	if _, err := fb2.Hostname(context.Background(), "i-0123"); err == nil || set != "" {
		t.Fatalf("hostile name accepted: %v, set %q", err, set)
	}
}

func TestParseModes(t *testing.T) {
	good := "4755 0 0 /usr/bin/sudo\n1777 0 0 /tmp\n0640 0 42 /etc/shadow\n"
	es, err := ParseModes(strings.NewReader(good))
	if err != nil || len(es) != 3 {
		t.Fatalf("%v %v", es, err)
	}
	if es[0].Mode != os.ModeSetuid|0o755 || es[1].Mode != os.ModeSticky|0o777 || es[2].GID != 42 {
		t.Errorf("entries: %+v", es)
	}
	if got := FormatModeEntry(0o4755, 0, 0, "/usr/bin/sudo"); got != "4755 0 0 /usr/bin/sudo\n" {
		t.Errorf("format: %q", got)
	}
	for _, bad := range []string{"4755 0 0 usr/bin/sudo", "4755 0 0 /usr/../etc", "99999 0 0 /x", "0755 -1 0 /x", "0755 0 /x", "0755 0 0 /"} {
		if _, err := ParseModes(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestApplyModes(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tool")
	os.WriteFile(f, []byte("x"), 0o755)
	os.Symlink(f, filepath.Join(dir, "link"))
	manifest := filepath.Join(dir, "modes")
	os.WriteFile(manifest, []byte(FormatModeEntry(0o4750, os.Getuid(), os.Getgid(), f)+FormatModeEntry(0o777, 0, 0, filepath.Join(dir, "link"))), 0o644)
	done := filepath.Join(dir, "state", "modes.done")
	if err := applyModes(manifest, done); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(f); st.Mode() != os.ModeSetuid|0o750 {
		t.Fatalf("mode %v", st.Mode())
	}
	// Once: a later change by the guest's admin is not undone at boot.
	os.Chmod(f, 0o755)
	if err := applyModes(manifest, done); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(f); st.Mode() != 0o755 {
		t.Fatalf("applied twice: %v", st.Mode())
	}
}
