package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary is also the wireguard-go child the bench starts.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "wg-child" {
		os.Exit(wgChild(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func buildCard(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "azote-card")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/azote/azote/cmd/azote-card")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRun runs the whole bench with tiny counts: every cell of every
// target must deliver frames, each checked byte for byte against the one
// sent (measure fails on any other), and every ping must come back. As
// root it includes wireguard-go in its network namespaces; otherwise the
// cards alone, started under the caller's uid.
func TestRun(t *testing.T) {
	c := config{card: buildCard(t), dur: 150 * time.Millisecond, warm: 50 * time.Millisecond, rounds: 1,
		sizes: []int{64, 1500}, pairs: []int{1, 2}, underlayMTU: 9000, window: 64, pings: 20, only: "abc"}
	want := []int{plain, aesGCM}
	switch {
	case os.Geteuid() != 0:
		t.Log("not root: wireguard-go left out (it needs network namespaces and TUN devices)")
	case !haveWG(t):
	default:
		c.wg = true
		want = append(want, wireguard)
	}
	var out, progress bytes.Buffer
	r, err := run(&out, &progress, c)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(r.targets) != len(want) {
		t.Fatalf("measured targets %v, want %v", r.targets, want)
	}
	for _, ce := range r.cells {
		for _, tg := range want {
			s := r.results[ce][tg]
			// CPU time is counted in 10 ms ticks: a short cell may see none.
			if s.pps <= 0 || s.gbps <= 0 || s.loss >= 1 || s.cpuDP < 0 || s.cpuAll < s.cpuDP {
				t.Errorf("%s, %d bytes, %d pairs: %+v", targetNames[tg], ce.size, ce.pairs, s)
			}
		}
	}
	for _, tg := range want {
		if r.p50[tg] <= 0 || r.p99[tg] < r.p50[tg] {
			t.Errorf("%s ping-pong: p50 %v p99 %v", targetNames[tg], r.p50[tg], r.p99[tg])
		}
	}
	if !strings.Contains(out.String(), "goal 64-byte ping-pong p99") {
		t.Errorf("the report has no verdict:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}

func haveWG(t *testing.T) bool {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Log("no /dev/net/tun: wireguard-go left out")
		return false
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Log("no ip (iproute2): wireguard-go left out")
		return false
	}
	return true
}

// TestChecksCatchCorruption: the checks the receivers make refuse a frame
// or datagram that differs from what was sent by one byte, or that names
// no template.
func TestChecksCatchCorruption(t *testing.T) {
	pays := payloads(4, 1472)
	var frames [][]byte
	for _, p := range pays {
		frames = append(frames, cardFrame(ipA, ipB, macA, macB, 5000, 6000, p))
	}
	buf := append(make([]byte, 12), frames[2]...)
	buf[10] = 1 // num_buffers
	if err := checkCardFrame(buf, frames); err != nil {
		t.Fatalf("the frame sent: %v", err)
	}
	flip := append([]byte(nil), buf...)
	flip[len(flip)-1] ^= 1
	short := buf[:len(buf)-1]
	other := append(make([]byte, 12), frames[3]...)
	other[10] = 1
	copy(other[12+42:], []byte{0, 0, 0, 2}) // names slot 2, carries slot 3
	for name, b := range map[string][]byte{"a flipped bit": flip, "one byte short": short, "another frame's payload": other} {
		if checkCardFrame(b, frames) == nil {
			t.Errorf("card frame with %s passed", name)
		}
	}
	if err := checkPayload(pays[1], pays); err != nil {
		t.Fatalf("the datagram sent: %v", err)
	}
	p := append([]byte(nil), pays[1]...)
	p[100] ^= 0x80
	if checkPayload(p, pays) == nil || checkPayload(pays[1][:3], pays) == nil {
		t.Error("a corrupted or truncated datagram passed")
	}
}
