package cardhost

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
	cardrt "github.com/azote/azote/internal/cards/runtime"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/proc"
	"github.com/azote/azote/internal/sandbox"
)

// The test binary is its own tiny card:
//
//	cardhost.test named-child --fd NAME=N …   prints each named file's content
//	cardhost.test blk --fd … --socket …        reads its channel and exits (a card that dies);
//	                                           Queues 99: lives a minute, 98: also ignores SIGTERM
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "named-child":
			os.Exit(namedChild(os.Args[2:]))
		case cardproto.KindBlk:
			os.Exit(dyingBlk(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

func namedChild(args []string) int {
	fs := flag.NewFlagSet("named-child", flag.ContinueOnError)
	card := cardrt.New("test", fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, name := range []string{"beta", "alpha"} {
		f, err := card.File(name)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		b, _ := io.ReadAll(f)
		fmt.Printf("%s=%s\n", name, b)
	}
	if _, err := card.File("gamma"); err == nil {
		fmt.Println("a file never donated was found")
		return 1
	}
	return 0
}

func dyingBlk(args []string) int {
	fs := flag.NewFlagSet("blk", flag.ContinueOnError)
	card := cardrt.New(cardproto.KindBlk, fs)
	fs.String("socket", "", "")
	fs.Int("uid", -1, "")
	fs.Int64("log-room", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ch, err := card.File(cardproto.FDChannel)
	if err != nil {
		return 1
	}
	cfg, key, escrow, err := cardproto.ReceiveBlk(ch)
	key.Free()
	escrow.Free()
	if err == nil && cfg.Queues == 98 {
		// Asked to live and to ignore SIGTERM, before the host sees the
		// channel closed and takes the card for started.
		signal.Ignore(syscall.SIGTERM)
	}
	ch.Close()
	if err != nil {
		return 1
	}
	if cfg.Queues >= 98 { // asked to live
		time.Sleep(time.Minute)
	}
	// Dies after it started: one that exits as it reads its channel is a
	// failed start (spawn reports it), not a death to restart.
	time.Sleep(100 * time.Millisecond)
	return 3
}

func fileWith(t *testing.T, content string) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestDonationByName: a child finds each donated file under its name,
// wherever it landed (here after an ExtraFile the command already had),
// and a name never donated is not found.
func TestDonationByName(t *testing.T) {
	cmd := exec.Command(os.Args[0], "named-child")
	cmd.ExtraFiles = []*os.File{fileWith(t, "unnamed")}
	var d Donation
	d.Donate("alpha", fileWith(t, "first"))
	d.Donate("beta", fileWith(t, "second"))
	d.Apply(cmd)
	if !strings.Contains(strings.Join(cmd.Args, " "), "--fd=alpha=4 --fd=beta=5") {
		t.Errorf("args %q: want alpha and beta after the existing fd 3", cmd.Args)
	}
	if d.ProcPath("beta") != "/proc/self/fd/5" {
		t.Errorf("ProcPath(beta) = %s", d.ProcPath("beta"))
	}
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "beta=second\nalpha=first\n" {
		t.Fatalf("child: %v\n%s", err, out)
	}
	defer func() {
		if recover() == nil {
			t.Error("a name donated twice was accepted")
		}
	}()
	d.Donate("alpha", fileWith(t, "again"))
}

func testHost(t *testing.T) *Host {
	r, err := sandbox.ParseRange("3000000:64")
	if err != nil {
		t.Fatal(err)
	}
	return &Host{Binary: os.Args[0], UIDs: sandbox.NewAllocator(r), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func testBlk(t *testing.T, queues int) Blk {
	dir := t.TempDir()
	backing := filepath.Join(dir, "vol.img")
	if err := os.WriteFile(backing, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	return Blk{
		Config:        cardproto.BlkConfig{VolumeID: "vol-t", Queues: queues},
		Backing:       backing,
		Socket:        filepath.Join(dir, "vol-t.sock"),
		MetricsSocket: filepath.Join(dir, "vol-t.metrics.sock"),
		Key:           func(bool) (*keymem.Buf, error) { return nil, nil },
		OpenLog: func() (*os.File, error) {
			return os.OpenFile(filepath.Join(dir, "card.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		},
	}
}

// TestRestartBudget: a card that dies at once is restarted MaxRestarts
// times, then left dead with its uid given back.
func TestRestartBudget(t *testing.T) {
	h := testHost(t)
	card, err := h.StartBlk(testBlk(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	uid := card.Handle().UID
	if !h.UIDs.Range().Contains(uid) {
		t.Fatalf("card uid %d outside the range", uid)
	}
	var restarts atomic.Int32
	done := make(chan struct{})
	go func() {
		h.Supervise(card, nil, func() bool { return false }, func() { restarts.Add(1) })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the supervisor never gave up on a card that keeps dying")
	}
	if n := restarts.Load(); n != MaxRestarts {
		t.Errorf("%d restarts, want %d", n, MaxRestarts)
	}
	// The uid came back: the next one taken after the whole range is it.
	seen := false
	for range h.UIDs.Range().Count {
		id, err := h.UIDs.Take()
		if err != nil {
			break
		}
		seen = seen || id == uid
	}
	if !seen {
		t.Errorf("uid %d was not given back", uid)
	}
}

// TestRestartWindow: restarts older than RestartWindow do not count.
func TestRestartWindow(t *testing.T) {
	var c Card
	t0 := time.Unix(1e9, 0)
	for i := range MaxRestarts {
		if !c.allowRestart(t0.Add(time.Duration(i) * time.Second)) {
			t.Fatalf("restart %d refused", i+1)
		}
	}
	if c.allowRestart(t0.Add(10 * time.Second)) {
		t.Fatal("restart past the budget allowed")
	}
	if !c.allowRestart(t0.Add(RestartWindow + 11*time.Second)) {
		t.Fatal("a restart after the window refused")
	}
}

// markedProcess runs a process whose command line carries marker.
func markedProcess(t *testing.T, marker string) (*exec.Cmd, chan error) {
	cmd := exec.Command("sh", append([]string{"-c", "sleep 60; :", "azote-card", "blk"}, strings.Fields(marker)...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd, exited
}

// TestAdoptByPIDAndStartTime: a recorded card whose pid and start time
// still match is adopted and watched (not killed; Done when it exits);
// one whose start time does not match (its pid recycled, or never
// recorded) is not the card: whatever carries its marker is killed, and
// the card is Done, for the supervisor to replace.
func TestAdoptByPIDAndStartTime(t *testing.T) {
	h := testHost(t)
	spec := testBlk(t, 1)
	cmd, exited := markedProcess(t, spec.Marker())
	time.Sleep(50 * time.Millisecond) // let sh exec
	start, err := proc.StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	recovered := 0
	card := h.AdoptBlk(spec, Handle{PID: cmd.Process.Pid, StartTime: start, UID: 3000001}, true, func() error { recovered++; return nil })
	select {
	case <-card.Done():
		t.Fatal("the recorded card was taken for gone")
	case <-exited:
		t.Fatal("the recorded card was killed")
	case <-time.After(200 * time.Millisecond):
	}
	if recovered != 1 {
		t.Errorf("key recovered %d times from the live card, want 1", recovered)
	}
	if hd := card.Handle(); hd.PID != cmd.Process.Pid || hd.UID != 3000001 {
		t.Errorf("handle %+v", hd)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-card.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the adopted card's exit was not noticed")
	}

	// Same pid, another start time: not the card.
	cmd2, exited2 := markedProcess(t, spec.Marker())
	time.Sleep(50 * time.Millisecond)
	start2, _ := proc.StartTime(cmd2.Process.Pid)
	card2 := h.AdoptBlk(spec, Handle{PID: cmd2.Process.Pid, StartTime: start2 + 1}, true, nil)
	select {
	case <-card2.Done():
	default:
		t.Error("a card with another start time was adopted")
	}
	select {
	case <-exited2:
	case <-time.After(5 * time.Second):
		t.Fatal("the process carrying the marker was left running")
	}
}

// TestStopTerm: Stop asks with SIGTERM first (a card that takes it is
// gone well within StopGrace) and the card is Done after it.
func TestStopTerm(t *testing.T) {
	h := testHost(t)
	spec := testBlk(t, 99) // lives (and takes SIGTERM's default: exit)
	card, err := h.StartBlk(spec)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	h.Stop([]*Card{card})
	select {
	case <-card.Done():
	default:
		t.Fatal("the card runs after Stop")
	}
	if d := time.Since(t0); d > StopGrace {
		t.Errorf("a card that takes SIGTERM took %v to stop", d)
	}
	log, _ := os.ReadFile(filepath.Join(filepath.Dir(spec.Backing), "card.log"))
	if bytes.Contains(log, []byte("panic")) {
		t.Errorf("card log: %s", log)
	}
}

// TestStopKill: a card that ignores SIGTERM is given StopGrace, then
// killed with SIGKILL, and Stop returns with the card gone.
func TestStopKill(t *testing.T) {
	h := testHost(t)
	card, err := h.StartBlk(testBlk(t, 98)) // lives and ignores SIGTERM
	if err != nil {
		t.Fatal(err)
	}
	pid := card.Handle().PID
	t.Cleanup(func() {
		select {
		case <-card.Done():
		default:
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	t0 := time.Now()
	h.Stop([]*Card{card})
	d := time.Since(t0)
	select {
	case <-card.Done():
	default:
		t.Fatalf("a card that ignores SIGTERM still runs %v after Stop began", d)
	}
	if d < StopGrace {
		t.Errorf("the card was gone after %v, before StopGrace (%v): it did not ignore SIGTERM, so this test proves nothing", d, StopGrace)
	}
	if d > StopGrace+2*time.Second {
		t.Errorf("Stop took %v for a card it had to kill", d)
	}
}
