package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azote/azote/internal/agent"
)

func TestDebianMirror(t *testing.T) {
	deb822 := `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`
	if m := debianMirror(deb822, true, "bookworm"); m != "http://deb.debian.org/debian" {
		t.Errorf("deb822: %q", m)
	}
	if m := debianMirror(deb822, true, "trixie"); m != "" {
		t.Errorf("deb822, other suite: %q", m)
	}
	disabled := "Types: deb\nURIs: http://a/debian\nSuites: bookworm\nEnabled: no\n"
	if m := debianMirror(disabled, true, "bookworm"); m != "" {
		t.Errorf("disabled source used: %q", m)
	}
	list := "# comment\ndeb-src http://src/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
	if m := debianMirror(list, false, "bookworm"); m != "http://mirror.example/debian" {
		t.Errorf("one-line: %q", m)
	}
	if m := debianMirror("deb http://security.debian.org/debian-security bookworm-security main\n", false, "bookworm"); m != "" {
		t.Errorf("security archive taken: %q", m)
	}
}

func fakeBzImage(version string) []byte {
	b := make([]byte, 0x1000)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	binary.LittleEndian.PutUint16(b[0x20e:], 0x300)
	copy(b[0x500:], version+" (debian-kernel@lists.debian.org) #1 SMP\x00")
	return b
}

func TestCheckBzImage(t *testing.T) {
	v, err := CheckBzImage(fakeBzImage("6.1.0-57-cloud-amd64"))
	if err != nil || v != "6.1.0-57-cloud-amd64" {
		t.Fatalf("%q %v", v, err)
	}
	elf := append([]byte("\x7fELF"), make([]byte, 0x1000)...)
	for name, b := range map[string][]byte{"ELF vmlinux": elf, "short": []byte("HdrS"), "empty": nil} {
		if _, err := CheckBzImage(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	old := fakeBzImage("2.6")
	binary.LittleEndian.PutUint16(old[0x206:], 0x0204)
	if _, err := CheckBzImage(old); err == nil {
		t.Error("boot protocol 2.04 accepted")
	}
}

func TestLoadImportRefusesBeforeUpload(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd, notKernel := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd"), filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, fakeBzImage("6.1.0"), 0o644)
	os.WriteFile(initrd, []byte("initramfs"), 0o644)
	os.WriteFile(notKernel, []byte("\x7fELF not a bzImage"), 0o644)
	art, err := LoadImport(kernel, initrd, "console=ttyS0")
	if err != nil || art.KernelVersion != "6.1.0" || string(art.Initrd) != "initramfs" {
		t.Fatalf("%+v %v", art, err)
	}
	for _, tc := range []struct{ k, i, cmd, want string }{
		{filepath.Join(dir, "missing"), initrd, "", "no such file"},
		{notKernel, initrd, "", "not an x86 bzImage"},
		{kernel, filepath.Join(dir, "missing"), "", "no such file"},
		{kernel, initrd, "a\nb", "control character"},
	} {
		if _, err := LoadImport(tc.k, tc.i, tc.cmd); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadImport(%s, %s, %q): %v, want %q", tc.k, tc.i, tc.cmd, err, tc.want)
		}
	}
}

// TestPackRootfs packs a tree with what a Debian root has and the rootfs
// card refuses (setuid, sticky, other owners, hard links, device nodes),
// and unpacks it with the card's own extractor.
func TestPackRootfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a device node and files of other owners")
	}
	root := t.TempDir()
	mk := func(p string, mode os.FileMode, data string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
	mk("usr/bin/sudo", 0o755|os.ModeSetuid, "sudo")
	mk("etc/shadow", 0o640, "root:*:")
	os.Chown(filepath.Join(root, "etc/shadow"), 0, 42)
	os.Mkdir(filepath.Join(root, "tmp"), 0o755)
	os.Chmod(filepath.Join(root, "tmp"), os.ModeSticky|0o777)
	os.Link(filepath.Join(root, "etc/shadow"), filepath.Join(root, "etc/shadow-"))
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	os.Mkdir(filepath.Join(root, "dev"), 0o755)
	if err := syscallMknod(filepath.Join(root, "dev/null")); err != nil {
		t.Fatal(err)
	}
	archive, st, err := packRootfs(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 1 || st.Modes < 4 {
		t.Errorf("stats %+v", st)
	}
	out := t.TempDir()
	dirf, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dirf.Close()
	if _, err := ExtractInitramfs(bytes.NewReader(archive), dirf); err != nil {
		t.Fatalf("the rootfs card's extractor refuses the archive: %v", err)
	}
	manifest, err := os.ReadFile(filepath.Join(out, agent.ModesPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"4755 0 0 /usr/bin/sudo\n", "1777 0 0 /tmp\n", "0640 0 42 /etc/shadow\n", "0640 0 42 /etc/shadow-\n"} {
		if !strings.Contains(string(manifest), want) {
			t.Errorf("manifest lacks %q:\n%s", want, manifest)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(out, "etc/shadow-")); string(b) != "root:*:" {
		t.Errorf("hard link copy: %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(out, "bin")); l != "usr/bin" {
		t.Errorf("symlink: %q", l)
	}
	again, _, _ := packRootfs(context.Background(), root)
	if !bytes.Equal(again, archive) {
		t.Error("the same tree gave different archives")
	}
}

func TestRenderedGuestConfig(t *testing.T) {
	for _, want := range []string{"Type=notify", "After=network-online.target", "Before=ssh.service", "ExecStart=/usr/local/sbin/azote-agent serve", "WantedBy=multi-user.target"} {
		if !strings.Contains(AgentUnit, want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}
	for _, want := range []string{"HostKey /etc/ssh/ssh_host_ed25519_key", "HostKey /etc/ssh/ssh_host_ecdsa_key",
		"AuthorizedKeysCommand /usr/local/sbin/azote-agent authorized-keys %u", "AuthorizedKeysCommandUser azote-keys",
		"PasswordAuthentication no", "PermitRootLogin no"} {
		if !strings.Contains(SSHDConfig, want+"\n") {
			t.Errorf("sshd config lacks %q", want)
		}
	}
	if strings.Contains(SSHDConfig, "rsa") {
		t.Error("an RSA host key's public part does not fit one report line")
	}
	if !strings.Contains(NetworkConfig, "Name=en* eth*\n") || !strings.Contains(NetworkConfig, "DHCP=ipv4\n") {
		t.Errorf("network config:\n%s", NetworkConfig)
	}
	if SudoersAdmin != "admin ALL=(ALL:ALL) NOPASSWD:ALL\n" {
		t.Errorf("sudoers: %q", SudoersAdmin)
	}
}

func TestBuildDebianRefusesBadPackageName(t *testing.T) {
	_, err := BuildDebian(context.Background(), DebianOptions{Packages: []string{"curl;rm -rf /"}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("%v", err)
	}
}
