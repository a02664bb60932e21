package kvmhost

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test host has a working /dev/kvm, the files it was given, and tells
// the command where it runs; a command that succeeds comes back with
// status 0 and exactly its output.
func TestDevKVM(t *testing.T) {
	Require(t)
	data := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(data, []byte("nested guest kernel goes here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := run(t, Options{
		Files: map[string]string{"/srv/guest/data": data},
		Command: []string{"sh", "-c", `
			ls -l /dev/kvm
			cat /srv/guest/data
			echo "AZOTE_KVM=$AZOTE_KVM cwd=$(pwd)"
			grep -o '^kvm_amd' /proc/modules
			printf 'no newline at the end'`},
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit status %d, want 0; output:\n%s", res.ExitCode, res.Output)
	}
	out := string(res.Output)
	// crw------- 1 root root 10, 232 ...: KVM's misc device.
	if !strings.HasPrefix(out, "crw") || !strings.Contains(out, "10, 232") {
		t.Errorf("/dev/kvm is not KVM's character device (10, 232):\n%s", out)
	}
	for _, want := range []string{"nested guest kernel goes here\n", "AZOTE_KVM=kvmhost cwd=/tmp\n", "kvm_amd\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "\nno newline at the end") {
		t.Errorf("the last line came back changed: %q", lastBytes(res.Output, 40))
	}
	t.Logf("test host booted in %v, whole run %v", res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
}

// A failing command's status comes back, and so does its output on
// stderr; a line that looks like the end line but lacks the run's nonce
// does not end the run.
func TestExitStatus(t *testing.T) {
	Require(t)
	res := run(t, Options{
		Command: []string{"sh", "-c", `echo to stderr >&2; echo 'AZOTE-KVMHOST 0000000000000000 END 0'; exit 7`},
	})
	if res.ExitCode != 7 {
		t.Fatalf("exit status %d, want 7; output:\n%s", res.ExitCode, res.Output)
	}
	if want := "to stderr\nAZOTE-KVMHOST 0000000000000000 END 0\n"; string(res.Output) != want {
		t.Errorf("output %q, want %q", res.Output, want)
	}
}

// A run that does not end in time is stopped, and QEMU with it.
func TestTimeout(t *testing.T) {
	Require(t)
	_, err := Run(t.Context(), Options{Command: []string{"sleep", "600"}, Timeout: 20 * time.Second, Log: testLog(t)})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	noChildren(t)
}

func run(t *testing.T, o Options) *Result {
	t.Helper()
	o.Log = testLog(t)
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	noChildren(t)
	return res
}

// testLog keeps the console for the log of a failed test only: a boot
// is some hundred lines.
func testLog(t *testing.T) *bytes.Buffer {
	var b bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("test host console and build:\n%s", lastBytes(b.Bytes(), 16<<10))
		}
	})
	return &b
}

// noChildren fails t if this process has a child left (QEMU): Run kills
// and reaps it before it returns.
func noChildren(t *testing.T) {
	t.Helper()
	me := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so after ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == me {
			t.Errorf("process left behind: %s", s[:strings.LastIndexByte(s, ')')+1])
		}
	}
}

// The framer finds its lines wherever the reads split them, passes the
// output on without the frame, and ignores lines without its nonce.
func TestFramer(t *testing.T) {
	const nonce = "0123456789abcdef"
	stream := "stty: junk\nAZOTE-KVMHOST fedcba9876543210 BEGIN\nxxAZOTE-KVMHOST " + nonce + " BEGIN\n" +
		"AZOTE-KVMHOST " + nonce + " BEGIN\n" +
		"line 1\nAZOTE-KVMHOST " + nonce + " ENDING\nAZOTE-KVMHOST fedcba9876543210 END 0\nlast" +
		"\nAZOTE-KVMHOST " + nonce + " END 42\ntrailing"
	want := "line 1\nAZOTE-KVMHOST " + nonce + " ENDING\nAZOTE-KVMHOST fedcba9876543210 END 0\nlast"
	for _, chunk := range []int{1, 2, 3, 7, 16, 1000} {
		var passed bytes.Buffer
		f := newFramer(nonce, &passed)
		for s := stream; len(s) > 0; {
			n := min(chunk, len(s))
			if _, err := f.Write([]byte(s[:n])); err != nil {
				t.Fatal(err)
			}
			s = s[n:]
		}
		status, out, err := f.result()
		if err != nil || status != 42 || string(out) != want || passed.String() != want {
			t.Errorf("chunks of %d: status %d err %v\noutput %q\npassed %q\nwant   %q", chunk, status, err, out, passed.String(), want)
		}
	}

	f := newFramer(nonce, nil)
	f.Write([]byte("AZOTE-KVMHOST " + nonce + " NOKVM\n"))
	if _, _, err := f.result(); !errors.Is(err, ErrNoKVM) {
		t.Errorf("NOKVM: %v", err)
	}
	f = newFramer(nonce, nil)
	f.Write([]byte("AZOTE-KVMHOST " + nonce + " BEGIN\nout\nAZOTE-KVMHOST " + nonce + " END"))
	if _, _, err := f.result(); err == nil {
		t.Error("a result without a complete end line")
	}
	f = newFramer(nonce, nil)
	f.Write([]byte("AZOTE-KVMHOST " + nonce + " BEGIN\n\nAZOTE-KVMHOST " + nonce + " END x\n"))
	if _, _, err := f.result(); err == nil {
		t.Error("a malformed status accepted")
	}
}

// The script quotes the command so that sh runs exactly the argv given.
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"", "a b", "it's", `"$HOME"`, "`id`", "a'\\''b"} {
		q := shellQuote(s)
		if !strings.HasPrefix(q, "'") || !strings.HasSuffix(q, "'") {
			t.Errorf("%q → %s", s, q)
		}
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		return
	}
	// Round trip through a real sh.
	args := []string{"a b", "it's", `"$HOME"`, "`id`", "*", "a'\\''b", ""}
	var cmd strings.Builder
	cmd.WriteString("printf '%s\\0'")
	for _, a := range args {
		cmd.WriteString(" " + shellQuote(a))
	}
	out, err := exec.CommandContext(t.Context(), "/bin/sh", "-c", cmd.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if strings.Join(got, "|") != strings.Join(args, "|") {
		t.Errorf("sh saw %q, want %q", got, args)
	}
}
