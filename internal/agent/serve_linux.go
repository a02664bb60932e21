package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// systemdMode is set when the agent runs as a systemd service (Serve)
// rather than as PID 1: power commands then go through systemctl, so
// that services stop and filesystems are unmounted cleanly.
var systemdMode bool

// Paths of the systemd-mode agent in a distribution image.
const (
	StateDir    = "/var/lib/azote"
	UserDataLog = "/var/log/azote-user-data.log"
)

// Serve is `azote-agent serve`, the agent as the systemd unit
// azote-agent.service of a distribution image (systemd is PID 1). It
// sets the host name from the metadata service, makes the SSH host keys
// that are missing and prints them on the console, tells systemd it is
// ready (sshd waits for that), reports ready to the host, runs the user
// data once and serves the control port. Without a metadata service (no
// network interface) it still makes the keys, reports ready and serves.
func Serve() error {
	systemdMode = true
	console := openConsole()
	report := func(r Report) { fmt.Fprintf(console, "\r\n%s\r\n", r.Format()) }
	fail := func(err error) { report(Report{Event: EventError, Message: err.Error()}) }
	instance := kernelParam("azote.instance")
	fb := &FirstBoot{
		IMDS: NewIMDS(IMDSEndpoint, 2*time.Second), Console: console, Instance: instance,
		SSHDir: "/etc/ssh", StateDir: StateDir, LogPath: UserDataLog, EtcDir: "/etc",
		SetHostname: func(s string) error { return unix.Sethostname([]byte(s)) },
		KeyGen:      SSHKeygen,
	}
	// The lease may still be on its way when network-online is reached
	// (wait-online needs only one link): a few tries, bounded.
	metadata := waitIMDS(fb.IMDS, 10*time.Second)
	fallback := instance
	if fallback == "" {
		fallback = "localhost"
	}
	host := fallback
	if metadata {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h, err := fb.Hostname(ctx, fallback)
		cancel()
		if err != nil {
			fail(fmt.Errorf("hostname: %w", err))
		}
		if h != "" {
			host = h
		}
	} else if err := fb.SetName(fallback); err != nil {
		fail(fmt.Errorf("hostname: %w", err))
	}
	if pubs, err := fb.HostKeys(); err != nil {
		fail(err)
	} else {
		if block, err := HostKeyBlock(pubs, host); err == nil {
			fmt.Fprint(console, "\r\n"+block)
		}
		for _, r := range HostKeyReports(pubs) {
			report(r)
		}
	}
	sdNotify("READY=1")
	r := Report{
		Event:    EventReady,
		Root:     kernelParam("azote.root"),
		Instance: instance,
		VCPUs:    onlineCPUs(),
		Message:  "systemd",
	}
	r.MemTotalKiB, r.MemRAMKiB = memory()
	r.ReadyMs = bootMillis()
	report(r)
	go func() {
		if !metadata {
			return
		}
		if ur, ok, err := fb.UserData(context.Background()); err != nil {
			fail(err)
		} else if ok {
			report(ur)
		}
	}()
	return controlLoop(report)
}

// waitIMDS tells whether the metadata service answers a token request
// within d.
func waitIMDS(c *IMDS, d time.Duration) bool {
	// Without an Ethernet interface there is nothing to wait for.
	if links, _ := filepath.Glob("/sys/class/net/e*"); len(links) == 0 {
		return false
	}
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Token(ctx)
		cancel()
		if err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sdNotify tells systemd the service's state (sd_notify(3)) when it runs
// as a Type=notify unit.
func sdNotify(state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// systemctl asks systemd to power off or reboot, so that services stop
// and the root volume is unmounted cleanly.
func systemctl(cmd int) {
	verb := "poweroff"
	if cmd == unix.LINUX_REBOOT_CMD_RESTART {
		verb = "reboot"
	}
	if out, err := exec.Command("systemctl", verb).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "systemctl %s: %v: %s\n", verb, err, out)
	}
}
