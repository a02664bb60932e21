package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// DebianUser is the account of the Debian image: in group sudo, with
// passwordless sudo and no password (it logs in with the instance's key
// pair only).
const DebianUser = "admin"

// keysUser runs sshd's AuthorizedKeysCommand: a system account that owns
// nothing and can log in nowhere.
const keysUser = "azote-keys"

// AgentUnit is azote-agent.service. Type=notify: the agent says ready
// once the host keys exist, and sshd (ordered after it) starts then.
const AgentUnit = `[Unit]
Description=azote guest agent: host name, SSH host keys, user data, the host's control port
Documentation=https://github.com/azote/azote/blob/main/docs/guests.md
Wants=network-online.target
After=network-online.target
Before=ssh.service

[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/local/sbin/azote-agent serve
Restart=on-failure
TimeoutStartSec=90

[Install]
WantedBy=multi-user.target
`

// SSHDConfig is /etc/ssh/sshd_config.d/azote.conf (read first by
// Debian's sshd_config, and sshd keeps the first value it reads).
const SSHDConfig = `# azote: written by azote image build.
# Host keys are made at first boot by azote-agent.service: ed25519 and
# ecdsa only, each public key fitting one console report line.
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
# The instance's key pair comes from the metadata service at each login,
# so that a key change needs no reboot.
AuthorizedKeysCommand /usr/local/sbin/azote-agent authorized-keys %u
AuthorizedKeysCommandUser ` + keysUser + `
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
`

// NetworkConfig is the systemd-networkd configuration: DHCP on every
// Ethernet interface. The host name comes from the metadata service
// (the agent), not from DHCP.
const NetworkConfig = `[Match]
Name=en* eth*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseMTU=yes
UseHostname=no
`

// WaitOnlineDropIn makes network-online mean one interface configured,
// bounded, and skips the wait in a guest without an Ethernet interface
// (its modules are loaded by the initramfs, so the links exist by now).
const WaitOnlineDropIn = `[Unit]
ConditionPathExistsGlob=/sys/class/net/e*

[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=15
`

// SudoersAdmin gives the admin user passwordless sudo (it has no
// password; it logs in with its key).
const SudoersAdmin = DebianUser + " ALL=(ALL:ALL) NOPASSWD:ALL\n"

// dpkgNoDoc keeps later installs as small as the image: no manual pages
// or documentation but the copyright files.
const dpkgNoDoc = `path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
`

func regexRE(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// configureDebian turns debootstrap's tree into the azote image: the
// agent and its unit, sshd, the admin user, networkd; and removes what
// must differ per instance (host keys, machine id) or is not needed
// (package lists, documentation).
func configureDebian(ctx context.Context, root string, agentBin []byte) error {
	at := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	files := []struct {
		path string
		perm os.FileMode
		data []byte
	}{
		{"usr/local/sbin/azote-agent", 0o755, agentBin},
		{"etc/systemd/system/azote-agent.service", 0o644, []byte(AgentUnit)},
		{"etc/ssh/sshd_config.d/azote.conf", 0o644, []byte(SSHDConfig)},
		{"etc/systemd/network/80-azote-dhcp.network", 0o644, []byte(NetworkConfig)},
		{"etc/systemd/system/systemd-networkd-wait-online.service.d/azote.conf", 0o644, []byte(WaitOnlineDropIn)},
		{"etc/sudoers.d/azote-admin", 0o440, []byte(SudoersAdmin)},
		{"etc/dpkg/dpkg.cfg.d/azote-nodoc", 0o644, []byte(dpkgNoDoc)},
		{"etc/azote/ssh-user", 0o644, []byte(DebianUser + "\n")},
		{"etc/hostname", 0o644, []byte("debian\n")},
		{"etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n")},
		{"etc/fstab", 0o644, []byte("# The root volume (/dev/vda) is mounted read-write by the initramfs agent.\n")},
		// Empty: systemd makes a machine id of the instance's own at its
		// first boot and commits it to the root volume.
		{"etc/machine-id", 0o444, nil},
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(at(f.path)), 0o755); err != nil {
			return err
		}
		if err := copyTo(at(f.path), f.perm, bytes.NewReader(f.data)); err != nil {
			return fmt.Errorf("image: writing %s: %w", f.path, err)
		}
	}
	// Per-instance secrets and identities must not be baked in: every
	// guest would share them.
	for _, pat := range []string{"etc/ssh/ssh_host_*", "var/lib/dbus/machine-id", "var/lib/apt/lists/*_*",
		"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*.log", "usr/share/man/*", "usr/share/info/*"} {
		ms, _ := filepath.Glob(at(pat))
		for _, m := range ms {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	docs, _ := filepath.Glob(at("usr/share/doc/*/*"))
	for _, d := range docs {
		if filepath.Base(d) != "copyright" {
			os.RemoveAll(d)
		}
	}
	for _, args := range [][]string{
		{"useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "--password", "*", DebianUser},
		{"useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", keysUser},
		{"systemctl", "enable", "systemd-networkd.service", "azote-agent.service"},
	} {
		cmd := exec.CommandContext(ctx, "chroot", append([]string{root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("image: in the root filesystem, %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}
