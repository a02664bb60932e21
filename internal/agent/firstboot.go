package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// EventUserData reports how the instance's user data ended ("exit 0",
// "exit status 3", "not a script"); it runs once per instance.
const EventUserData = "user-data"

// DefaultSSHUser is the account whose authorized key the metadata
// service gives (the Debian image's "admin"); /etc/azote/ssh-user, when
// present, names another.
const DefaultSSHUser = "admin"

// SSHUserPath names the account AuthorizedKeys answers for.
const SSHUserPath = "/etc/azote/ssh-user"

// HostKeyTypes are the SSH host keys the agent makes at first boot: only
// those whose public key fits one report line (an RSA key would not).
var HostKeyTypes = []string{"ed25519", "ecdsa"}

// FirstBoot is the first-boot work of the systemd-mode agent, with every
// path it touches, so that tests can point them at a directory.
type FirstBoot struct {
	IMDS     *IMDS
	Console  io.Writer
	Instance string // azote.instance= from the kernel command line
	SSHDir   string // /etc/ssh
	// StateDir keeps the user data and the record that it ran
	// (/var/lib/azote); LogPath gets its output too.
	StateDir string
	LogPath  string
	// EtcDir holds hostname and hosts (/etc).
	EtcDir string
	// SetHostname sets the kernel's host name (unix.Sethostname).
	SetHostname func(string) error
	// KeyGen makes a host key of typ at path (ssh-keygen).
	KeyGen func(typ, path string) error
}

// hostnameRE is what the agent accepts as a host name: DNS labels of
// lowercase letters, digits and '-', within the kernel's 64 bytes.
var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// Hostname sets the host name from the metadata service (meta-data/
// hostname), or to fallback when the service does not answer, and
// writes it to /etc/hostname and /etc/hosts (so that sudo resolves it).
func (f *FirstBoot) Hostname(ctx context.Context, fallback string) (string, error) {
	name := fallback
	var ferr error
	if b, err := f.IMDS.Get(ctx, "meta-data/hostname"); err == nil {
		name = strings.ToLower(strings.TrimSpace(string(b)))
	} else {
		ferr = err
	}
	if err := f.SetName(name); err != nil {
		return "", err
	}
	return name, ferr
}

// SetName sets the host name to name without asking the metadata
// service (a guest without one gets its instance id).
func (f *FirstBoot) SetName(name string) error {
	if len(name) > 64 || !hostnameRE.MatchString(name) {
		return fmt.Errorf("hostname %q: not a valid host name", name)
	}
	if err := f.SetHostname(name); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := os.WriteFile(filepath.Join(f.EtcDir, "hostname"), []byte(name+"\n"), 0o644); err != nil {
		return err
	}
	short, _, _ := strings.Cut(name, ".")
	hosts := "127.0.0.1\tlocalhost\n127.0.1.1\t" + name
	if short != name {
		hosts += " " + short
	}
	hosts += "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	return os.WriteFile(filepath.Join(f.EtcDir, "hosts"), []byte(hosts), 0o644)
}

// HostKeys makes the host keys that are missing and returns the public
// keys, "type base64" each, in HostKeyTypes order.
func (f *FirstBoot) HostKeys() ([]string, error) {
	var pubs []string
	for _, t := range HostKeyTypes {
		p := filepath.Join(f.SSHDir, "ssh_host_"+t+"_key")
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := f.KeyGen(t, p); err != nil {
				return pubs, fmt.Errorf("host key %s: %w", t, err)
			}
		}
		b, err := os.ReadFile(p + ".pub")
		if err != nil {
			return pubs, fmt.Errorf("host key %s: %w", t, err)
		}
		fields := strings.Fields(string(b))
		if len(fields) < 2 {
			return pubs, fmt.Errorf("host key %s: malformed %s.pub", t, p)
		}
		pubs = append(pubs, fields[0]+" "+fields[1])
	}
	return pubs, nil
}

// SSHKeygen makes a host key with ssh-keygen, without passphrase.
func SSHKeygen(typ, path string) error {
	out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-C", "", "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// HostKeyBlock is what EC2 prints on the console at first boot (and
// what `aws ec2 get-console-output` users grep for): the fingerprints,
// then the keys, of host.
func HostKeyBlock(pubs []string, host string) (string, error) {
	var b strings.Builder
	b.WriteString("-----BEGIN SSH HOST KEY FINGERPRINTS-----\n")
	for _, p := range pubs {
		typ, blob, _ := strings.Cut(p, " ")
		fp, bits, err := fingerprint(typ, blob)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d %s root@%s (%s)\n", bits, fp, host, keyLabel(typ))
	}
	b.WriteString("-----END SSH HOST KEY FINGERPRINTS-----\n")
	b.WriteString("-----BEGIN SSH HOST KEY KEYS-----\n")
	for _, p := range pubs {
		fmt.Fprintf(&b, "%s root@%s\n", p, host)
	}
	b.WriteString("-----END SSH HOST KEY KEYS-----\n")
	return b.String(), nil
}

// HostKeyReports are the report lines of pubs, one per key.
func HostKeyReports(pubs []string) []Report {
	var rs []Report
	for _, p := range pubs {
		rs = append(rs, Report{Event: EventHostKey, Message: p})
	}
	return rs
}

// fingerprint is ssh-keygen -l's SHA256 fingerprint and key size.
func fingerprint(typ, b64 string) (string, int, error) {
	blob, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", 0, fmt.Errorf("host key %s: %w", typ, err)
	}
	sum := sha256.Sum256(blob)
	bits := 256
	switch typ {
	case "ecdsa-sha2-nistp384":
		bits = 384
	case "ecdsa-sha2-nistp521":
		bits = 521
	}
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]), bits, nil
}

func keyLabel(typ string) string {
	switch {
	case typ == "ssh-ed25519":
		return "ED25519"
	case strings.HasPrefix(typ, "ecdsa-"):
		return "ECDSA"
	case typ == "ssh-rsa":
		return "RSA"
	}
	return strings.ToUpper(typ)
}

// UserData runs the instance's user data once: the first boot of each
// instance fetches it and, when it starts with "#!", writes it to
// StateDir/user-data (0700) and runs it, its output on the console and
// in LogPath. StateDir/user-data.done records the instance id before the
// script starts, so that neither a reboot nor a script that reboots the
// guest runs it again (as cloud-init's once-per-instance). It returns
// the report of how it ended, or ok false when there was nothing to do.
func (f *FirstBoot) UserData(ctx context.Context) (r Report, ok bool, err error) {
	done := filepath.Join(f.StateDir, "user-data.done")
	if b, err := os.ReadFile(done); err == nil && strings.TrimSpace(string(b)) == f.Instance {
		return Report{}, false, nil
	}
	data, err := f.IMDS.Get(ctx, "user-data")
	if errors.Is(err, ErrIMDSNotFound) {
		data, err = nil, nil
	}
	if err != nil {
		// Not recorded as done: the next boot asks again.
		return Report{}, false, fmt.Errorf("user data: %w", err)
	}
	if err := os.MkdirAll(f.StateDir, 0o700); err != nil {
		return Report{}, false, err
	}
	if err := os.WriteFile(done, []byte(f.Instance+"\n"), 0o600); err != nil {
		return Report{}, false, fmt.Errorf("user data: recording it: %w", err)
	}
	if len(data) == 0 {
		return Report{}, false, nil
	}
	if !bytes.HasPrefix(data, []byte("#!")) {
		return Report{Event: EventUserData, Message: "not a script (no #!): not run"}, true, nil
	}
	script := filepath.Join(f.StateDir, "user-data")
	os.Remove(script)
	if err := os.WriteFile(script, data, 0o700); err != nil {
		return Report{}, false, err
	}
	log, err := os.OpenFile(f.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return Report{}, false, fmt.Errorf("user data log: %w", err)
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = "/"
	cmd.Stdout = io.MultiWriter(log, f.Console)
	cmd.Stderr = cmd.Stdout
	msg := "exit 0"
	if err := cmd.Run(); err != nil {
		msg = err.Error()
	}
	return Report{Event: EventUserData, Message: msg}, true, nil
}

// AuthorizedKeys writes the authorized key the metadata service holds
// for the instance (public-keys/0/openssh-key) when user is the
// configured account, and nothing for any other user or when there is no
// key. It is sshd's AuthorizedKeysCommand, so a key change needs no
// reboot; only lines that begin with a key type are passed on (no
// authorized_keys options such as command=).
func AuthorizedKeys(ctx context.Context, c *IMDS, user, configured string, w io.Writer) error {
	if user != configured {
		return nil
	}
	b, err := c.Get(ctx, "meta-data/public-keys/0/openssh-key")
	if errors.Is(err, ErrIMDSNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "ssh-") || strings.HasPrefix(line, "ecdsa-sha2-") || strings.HasPrefix(line, "sk-") {
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

// ConfiguredSSHUser reads SSHUserPath, or DefaultSSHUser.
func ConfiguredSSHUser(path string) string {
	if b, err := os.ReadFile(path); err == nil {
		if u := strings.TrimSpace(string(b)); u != "" {
			return u
		}
	}
	return DefaultSSHUser
}
