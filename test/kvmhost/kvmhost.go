package kvmhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/azote/azote/internal/image"
)

// EnvKVM is the environment variable that says where KVM is: "kvmhost"
// inside a test host (Run sets it for the command), "direct" where an
// operator says this machine's /dev/kvm can run a Linux guest.
const EnvKVM = "AZOTE_KVM"

// Inside reports whether this process runs inside a test host.
func Inside() bool { return os.Getenv(EnvKVM) == "kvmhost" }

// Direct reports whether tests that need KVM run in this process rather
// than inside a test host: inside one, or with AZOTE_KVM=direct. A
// /dev/kvm alone does not say it: some hosts have a paravirtual KVM that
// creates VMs but cannot boot Linux.
func Direct() bool {
	v := os.Getenv(EnvKVM)
	return v == "kvmhost" || v == "direct"
}

// Modules are the kernel modules that make /dev/kvm in the test host;
// image.Build adds what they depend on (kvm_amd needs kvm, kvm needs
// irqbypass). The CPU is QEMU's emulated EPYC, so AMD's module.
var Modules = []string{"irqbypass", "kvm", "kvm_amd"}

// Defaults.
const (
	DefaultTimeout = 10 * time.Minute
	DefaultMemMiB  = 2048
	DefaultCPUs    = 2
)

// Options say what to run in the test host.
type Options struct {
	// Binaries are host executables copied to /usr/local/bin, which is
	// first in the command's PATH. A static binary (a Go test binary
	// built with CGO_ENABLED=0) needs nothing else; a dynamic one brings
	// its libraries along.
	Binaries []string
	// Files maps a path inside the test host to the host file it is
	// copied from (a nested guest's kernel and initramfs).
	Files map[string]string
	// Command is the argv run once /dev/kvm exists, in /tmp, with
	// AZOTE_KVM=kvmhost and Env in its environment and stdin from
	// /dev/null. Use {"sh", "-c", "..."} for a shell command.
	Command []string
	Env     []string // more "KEY=value" for the command
	// Timeout bounds the run from the moment it has the machine's
	// turn: building the initramfs, booting, the command. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Log receives build progress and the test host's console (kernel
	// and agent); nil discards them. Result.Console keeps the end.
	Log io.Writer
	// Output receives the command's output as it arrives, besides
	// Result.Output.
	Output io.Writer
	// AgentPath is a static azote-agent to use as init; empty means
	// built from this module with go build.
	AgentPath string
	// CacheDir holds the Debian packages the kernel and busybox come
	// from; empty means $AZOTE_CACHE_DIR, else the CLI's default.
	CacheDir string
	MemMiB   int // test host memory; 0 means DefaultMemMiB
	CPUs     int // test host CPUs; 0 means DefaultCPUs
}

// Result is what came back from the test host.
type Result struct {
	ExitCode int    // the command's exit status; 128+n for signal n
	Output   []byte // everything the command wrote to stdout and stderr
	// Console is the end of the test host's console.
	Console []byte
	// Boot is from QEMU's start to the command's start; Elapsed from
	// the end of the wait for the machine's turn to the command's end.
	Boot, Elapsed time.Duration
}

var (
	// ErrTimeout is returned when the command has not ended within
	// Options.Timeout.
	ErrTimeout = errors.New("kvmhost: timed out")
	// ErrNoKVM is returned when /dev/kvm did not appear in the test
	// host (a module failed to load: the console says why).
	ErrNoKVM = errors.New("kvmhost: no /dev/kvm in the test host")
	// ErrNoResult is returned when QEMU ended before the command's end
	// line came back (a kernel panic, a crash of QEMU).
	ErrNoResult = errors.New("kvmhost: the test host stopped before the command ended")
)

// consoleTail is how much of the console Result.Console and errors keep.
const consoleTail = 64 << 10

// Run boots a test host, runs o.Command in it and returns its result. An
// error means the command's status is unknown; a command that ran and
// failed is a Result with a non-zero ExitCode.
func Run(ctx context.Context, o Options) (*Result, error) {
	if len(o.Command) == 0 {
		return nil, errors.New("kvmhost: no command")
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MemMiB == 0 {
		o.MemMiB = DefaultMemMiB
	}
	if o.CPUs == 0 {
		o.CPUs = DefaultCPUs
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.CacheDir == "" {
		o.CacheDir = defaultCacheDir()
	}
	qemu, err := exec.LookPath(QEMU)
	if err != nil {
		return nil, fmt.Errorf("kvmhost: %w (install Debian's qemu-system-x86 package)", err)
	}
	unlock, err := takeTurn(ctx, o.Log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx, cancel := context.WithTimeoutCause(ctx, o.Timeout, fmt.Errorf("%w after %v", ErrTimeout, o.Timeout))
	defer cancel()
	start := time.Now()

	dir, err := os.MkdirTemp("", "kvmhost-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	nonce := make([]byte, 8)
	rand.Read(nonce)
	fr := newFramer(hex.EncodeToString(nonce), o.Output)
	kernel, initrd, err := build(ctx, dir, o, fr.nonce)
	if err != nil {
		return nil, err
	}
	res, err := boot(ctx, qemu, o, kernel, initrd, dir, fr)
	if res != nil {
		res.Elapsed = time.Since(start)
	}
	return res, err
}

// build makes the test host's kernel and initramfs files in dir.
func build(ctx context.Context, dir string, o Options, nonce string) (kernel, initrd string, err error) {
	agent := o.AgentPath
	if agent == "" {
		agent = filepath.Join(dir, "azote-agent")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", agent, "github.com/azote/azote/cmd/azote-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("kvmhost: building azote-agent: %w\n%s", err, out)
		}
	}
	var files []image.File
	for _, p := range sortedKeys(o.Files) {
		data, err := os.ReadFile(o.Files[p])
		if err != nil {
			return "", "", fmt.Errorf("kvmhost: %w", err)
		}
		mode := uint32(0o644)
		if fi, err := os.Stat(o.Files[p]); err == nil {
			mode = uint32(fi.Mode().Perm())
		}
		files = append(files, image.File{Path: strings.TrimPrefix(p, "/"), Mode: mode, Data: data})
	}
	a, err := image.Build(image.BuildOptions{
		Modules:   Modules,
		Binaries:  o.Binaries,
		Files:     files,
		Script:    script(nonce, o.Command, o.Env),
		AgentPath: agent,
		CacheDir:  o.CacheDir,
		// Whatever kernel package is cached makes a good test host,
		// and the image lives for one run.
		Cached:   true,
		NoGzip:   true,
		Progress: func(s string) { fmt.Fprintf(o.Log, "kvmhost: image: %s\n", s) },
	})
	if err != nil {
		return "", "", fmt.Errorf("kvmhost: building the test host: %w", err)
	}
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(kernel, a.Kernel, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(initrd, a.Initrd, 0o644); err != nil {
		return "", "", err
	}
	return kernel, initrd, nil
}

// outPort is the test host's serial port for the command's output: COM2.
// The agent also opens it as its control port, but only ever writes
// there in answer to a command from the host, and Run sends none.
const outPort = "/dev/ttyS1"

// script is what the agent runs once the test host is up. It waits for
// /dev/kvm (the agent loaded the modules before it reported ready, but a
// device node appears when devtmpfs has made it), frames the command's
// output between a begin line and an end line with its status, then
// powers the test host off — late, as a fallback: Run kills QEMU as soon
// as the end line is in, and the wait lets the UART drain what the
// command wrote last.
func script(nonce string, argv, env []string) []byte {
	var b bytes.Buffer
	m := "AZOTE-KVMHOST " + nonce
	fmt.Fprintf(&b, "# written by kvmhost.Run\nexec </dev/null\n")
	// Raw: no \n → \r\n translation, no echo; the bytes the command
	// writes are the bytes the host reads.
	fmt.Fprintf(&b, "stty -F %s raw -echo\n", outPort)
	fmt.Fprintf(&b, "exec 3>%s\n", outPort)
	fmt.Fprintf(&b, "i=0\nwhile [ ! -c /dev/kvm ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n")
	fmt.Fprintf(&b, "if [ ! -c /dev/kvm ]; then\n\techo 'kvmhost: no /dev/kvm' >&2\n\tprintf '%s NOKVM\\n' >&3\nelse\n", m)
	fmt.Fprintf(&b, "\tprintf '%s BEGIN\\n' >&3\n", m)
	fmt.Fprintf(&b, "\tcd /tmp\n\texport %s=kvmhost\n", EnvKVM)
	for _, e := range env {
		fmt.Fprintf(&b, "\texport %s\n", shellQuote(e))
	}
	fmt.Fprintf(&b, "\t")
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(a))
	}
	fmt.Fprintf(&b, " >&3 2>&3 3>&-\n\trc=$?\n")
	// The newline ends a last line without one; the host takes it off.
	fmt.Fprintf(&b, "\tprintf '\\n%s END %%d\\n' $rc >&3\nfi\n", m)
	fmt.Fprintf(&b, "sleep 10\npoweroff -f\n")
	return b.Bytes()
}

// shellQuote quotes s for sh: single quotes, each ' written as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// defaultCacheDir is the azote CLI's package cache, so the test host uses
// the kernel package images are built from (and one download serves
// both).
func defaultCacheDir() string {
	if d := os.Getenv("AZOTE_CACHE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/azote"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "azote")
	}
	return filepath.Join(os.TempDir(), "azote-cache")
}
