// Command blk measures block I/O through the Go vhost-user frontend, in
// one run and on the same kind of file, for:
//
//	(a) azote-card blk, plaintext
//	(b) azote-card blk, AES-256-XTS
//	(c) qemu-storage-daemon, raw file export
//	(d) qemu-storage-daemon, luks driver (AES-XTS as well)
//
// Workloads: 4 KiB random reads and writes at queue depth 32 per queue
// with 1 and 2 queues, and 1 MiB sequential reads and writes.
//
//	go run ./bench/blk -card bin/azote-card
package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/azote/azote/bench/internal/stats"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/vhostuser"
)

func main() {
	card := flag.String("card", "bin/azote-card", "azote-card binary")
	size := flag.Int64("size", 1<<30, "bytes per test file")
	dur := flag.Duration("time", 2*time.Second, "duration of each measurement")
	rounds := flag.Int("rounds", 3, "rounds; each cell reports the median")
	flag.BoolVar(&direct, "direct", false, "bypass the host page cache: O_DIRECT for the card, cache.direct=on for qemu-storage-daemon")
	only := flag.String("workloads", "", "run only the workloads whose name matches this regular expression")
	flag.Parse()
	re, err := regexp.Compile(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/blk: -workloads:", err)
		os.Exit(2)
	}
	if err := run(*card, *size, *dur, *rounds, re); err != nil {
		fmt.Fprintln(os.Stderr, "bench/blk:", err)
		os.Exit(1)
	}
}

// direct selects host-cache-bypassing I/O for every target.
var direct bool

type workload struct {
	name   string
	queues int
	bs     int
	write  bool
	seq    bool
}

type target struct {
	name string
	// start starts the target; stop ends it and returns, for a card on
	// the page cache, the share of the transfers each path took.
	start func(dir string, queues int) (sock string, stop func() string, err error)
}

func run(card string, size int64, dur time.Duration, rounds int, only *regexp.Regexp) error {
	dir, err := os.MkdirTemp("", "azote-bench-blk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	raw := filepath.Join(dir, "raw.img")
	if err := fill(raw, size); err != nil {
		return err
	}
	// The LUKS1 header comes from cryptsetup (qemu-img's luks creation
	// times PBKDF2 with CPU accounting this VM does not provide); the
	// payload after the 2 MiB header is filled like the raw file.
	luks := filepath.Join(dir, "luks.img")
	if err := fill(luks, size+2<<20); err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "luks.key")
	os.WriteFile(keyFile, []byte("bench"), 0o600)
	if out, err := exec.Command("cryptsetup", "luksFormat", "-q", "--type", "luks1", "-c", "aes-xts-plain64", "-s", "512",
		"--pbkdf-force-iterations", "1000", "--key-file", keyFile, luks).CombinedOutput(); err != nil {
		return fmt.Errorf("cryptsetup luksFormat: %v: %s", err, out)
	}
	key := make([]byte, 64)
	rand.Read(key)
	targets := []target{
		{"(a) azote card, plaintext", cardTarget(card, raw, nil)},
		{"(b) azote card, aes-xts-plain64", cardTarget(card, raw, key)},
		{"(c) qemu-storage-daemon raw", qsdTarget(raw, false)},
		{"(d) qemu-storage-daemon luks", qsdTarget(luks, true)},
	}
	results := map[string]map[string]float64{}
	tests := []workload{
		{"4k randread q1 qd32 (IOPS)", 1, 4096, false, false},
		{"4k randwrite q1 qd32 (IOPS)", 1, 4096, true, false},
		{"4k randread q2 qd32 (IOPS)", 2, 4096, false, false},
		{"4k randwrite q2 qd32 (IOPS)", 2, 4096, true, false},
		{"1M seqread q1 qd4 (MiB/s)", 1, 1 << 20, false, true},
		{"1M seqwrite q1 qd4 (MiB/s)", 1, 1 << 20, true, true},
	}
	tests = slices.DeleteFunc(tests, func(w workload) bool { return !only.MatchString(w.name) })
	if len(tests) == 0 {
		return fmt.Errorf("no workload matches %q", only)
	}
	// Rounds interleave the targets workload by workload, so the four
	// cells of a row are measured within seconds of each other and a slow
	// spell of the machine or its disk hits them alike, and the order of
	// the targets rotates from round to round, so that none always follows
	// another (this disk's write-back makes the target after a write-heavy
	// one slower or faster); each cell reports the median of its rounds.
	samples := map[string]map[string][]float64{}
	paths := map[string]string{} // target and workload: the last round's paths
	for _, tg := range targets {
		results[tg.name] = map[string]float64{}
		samples[tg.name] = map[string][]float64{}
	}
	for round := 0; round < rounds; round++ {
		for _, ts := range tests {
			for k := range targets {
				tg := targets[(k+round)%len(targets)]
				sock, stop, err := tg.start(dir, 2)
				if err != nil {
					return fmt.Errorf("%s: %w", tg.name, err)
				}
				depth := 32
				if ts.seq {
					depth = 4
				}
				ops, err := measure(sock, ts.queues, depth, ts.bs, ts.write, ts.seq, size, dur)
				if p := stop(); p != "" {
					paths[tg.name[:3]+" "+ts.name] = p
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", tg.name, ts.name, err)
				}
				v := ops / dur.Seconds()
				if ts.seq {
					v = v * float64(ts.bs) / (1 << 20)
				}
				samples[tg.name][ts.name] = append(samples[tg.name][ts.name], v)
				fmt.Fprintf(os.Stderr, "round %d %-34s %-30s %10.0f\n", round+1, tg.name, ts.name, v)
			}
		}
	}
	for _, tg := range targets {
		for _, ts := range tests {
			results[tg.name][ts.name] = stats.Median(samples[tg.name][ts.name])
		}
	}
	cache := "host page cache"
	if direct {
		cache = "direct I/O (O_DIRECT / cache.direct=on)"
	}
	fmt.Printf("median of %d rounds of %v per cell, %s\n", rounds, dur, cache)
	fmt.Printf("%-30s", "workload")
	for _, tg := range targets {
		fmt.Printf(" %16s", tg.name[:3])
	}
	fmt.Printf(" %8s %8s %8s\n", "b/a", "b/d", "a/c")
	for _, ts := range tests {
		fmt.Printf("%-30s", ts.name)
		for _, tg := range targets {
			fmt.Printf(" %16.0f", results[tg.name][ts.name])
		}
		a, b := results[targets[0].name][ts.name], results[targets[1].name][ts.name]
		c, d := results[targets[2].name][ts.name], results[targets[3].name][ts.name]
		fmt.Printf(" %8.2f %8.2f %8.2f\n", b/a, b/d, a/c)
	}
	fmt.Println("goals: b/a >= 0.9, b/d >= 1.0, a/c >= 1.0")
	for _, tg := range targets {
		fmt.Println(tg.name)
	}
	if len(paths) > 0 {
		fmt.Println("page-cache paths the card took (last round, share of transfers):")
		for _, tg := range targets[:2] {
			for _, ts := range tests {
				if p, ok := paths[tg.name[:3]+" "+ts.name]; ok {
					fmt.Printf("  %s %-30s %s\n", tg.name[:3], ts.name, p)
				}
			}
		}
	}
	return nil
}

// fill writes the file fully so reads hit allocated blocks.
func fill(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	rand.Read(buf)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
	}
	return f.Sync()
}

func waitSock(sock string, cmd *exec.Cmd) error {
	for i := 0; i < 1000; i++ {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		if cmd.ProcessState != nil {
			return fmt.Errorf("exited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("no socket %s", sock)
}

func cardTarget(bin, file string, key []byte) func(string, int) (string, func() string, error) {
	return func(dir string, queues int) (string, func() string, error) {
		sock := filepath.Join(dir, "card.sock")
		os.Remove(sock)
		flags := os.O_RDWR
		if direct {
			flags |= unix.O_DIRECT
		}
		f, err := os.OpenFile(file, flags, 0)
		if err != nil {
			return "", nil, err
		}
		defer f.Close()
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", nil, err
		}
		ours, theirs := os.NewFile(uintptr(fds[0]), "c"), os.NewFile(uintptr(fds[1]), "c")
		defer ours.Close()
		msock := filepath.Join(dir, "card-metrics.sock")
		os.Remove(msock)
		ml, err := net.ListenUnix("unix", &net.UnixAddr{Name: msock, Net: "unix"})
		if err != nil {
			return "", nil, err
		}
		// The card holds its own copy; closing ours must leave the path.
		ml.SetUnlinkOnClose(false)
		defer ml.Close()
		mf, err := ml.File()
		if err != nil {
			return "", nil, err
		}
		defer mf.Close()
		cmd := exec.Command(bin, "blk", "--socket", sock)
		var d cardhost.Donation
		d.Donate(cardproto.FDBacking, f)
		d.Donate(cardproto.FDChannel, theirs)
		d.Donate(cardproto.FDMetrics, mf)
		d.Apply(cmd)
		cmd.Stderr = nil
		if err := cmd.Start(); err != nil {
			return "", nil, err
		}
		theirs.Close()
		k := append([]byte(nil), key...)
		if err := cardproto.SendBlk(ours, cardproto.BlkConfig{VolumeID: "bench", Queues: queues, Encrypted: key != nil}, k, nil); err != nil {
			return "", nil, err
		}
		if err := waitSock(sock, cmd); err != nil {
			return "", nil, err
		}
		return sock, func() string {
			p := pathShares(msock)
			cmd.Process.Kill()
			cmd.Wait()
			return p
		}, nil
	}
}

// pathShares asks the card which path its page-cache transfers took:
// "read mapped 3% pread 97%", nothing on O_DIRECT.
func pathShares(sock string) string {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return "metrics: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	m, err := cardproto.ReadBlkMetrics(c)
	if err != nil {
		return "metrics: " + err.Error()
	}
	var out []string
	for _, op := range []string{"read", "write"} {
		n := map[string]uint64{}
		var total uint64
		for _, p := range m.Paths {
			if p.Op == op {
				n[p.Path] += p.Requests
				total += p.Requests
			}
		}
		if total > 0 {
			out = append(out, fmt.Sprintf("%s mapped %.0f%% pread %.0f%%", op,
				100*float64(n["mapped"])/float64(total), 100*float64(n["pread"])/float64(total)))
		}
	}
	return strings.Join(out, ", ")
}

func qsdTarget(file string, luks bool) func(string, int) (string, func() string, error) {
	return func(dir string, queues int) (string, func() string, error) {
		sock := filepath.Join(dir, "qsd.sock")
		os.Remove(sock)
		args := []string{"--blockdev", "driver=file,node-name=file,filename=" + file + ",aio=threads,cache.direct=" + map[bool]string{false: "off", true: "on"}[direct]}
		node := "file"
		if luks {
			args = append([]string{"--object", "secret,id=s0,data=bench"}, args...)
			args = append(args, "--blockdev", "driver=luks,node-name=luks,file=file,key-secret=s0")
			node = "luks"
		}
		args = append(args, "--export", fmt.Sprintf("type=vhost-user-blk,id=exp,node-name=%s,addr.type=unix,addr.path=%s,writable=on,num-queues=%d", node, sock, queues))
		cmd := exec.Command("qemu-storage-daemon", args...)
		if err := cmd.Start(); err != nil {
			return "", nil, err
		}
		if err := waitSock(sock, cmd); err != nil {
			cmd.Process.Kill()
			return "", nil, err
		}
		return sock, func() string { cmd.Process.Kill(); cmd.Wait(); return "" }, nil
	}
}

// measure drives queues goroutines, each with depth requests in flight, for
// dur, and returns the number of completed requests.
func measure(sock string, queues, depth, bs int, write, seq bool, size int64, dur time.Duration) (float64, error) {
	// The socket file appears at bind, a moment before the server
	// listens: a refused connection is retried briefly.
	var fe *vhostuser.Frontend
	var err error
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		fe, err = vhostuser.Dial(sock, vhostuser.FrontendConfig{MemSize: 64 << 20, NumQueues: queues, QueueSize: 128})
		if err == nil || !errors.Is(err, unix.ECONNREFUSED) || time.Since(start) > 2*time.Second {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	defer fe.Close()
	type slot struct {
		hdr, st, data          []byte
		hdrGPA, dataGPA, stGPA uint64
	}
	slots := make([][]slot, queues)
	for q := range slots {
		for i := 0; i < depth; i++ {
			var s slot
			s.hdrGPA, s.hdr, _ = fe.Alloc(16)
			var err error
			// Page-aligned, as a Linux guest's page-cache I/O is (and as
			// O_DIRECT wants).
			var data []byte
			s.dataGPA, data, err = fe.Alloc(bs + 4096)
			if err != nil {
				return 0, err
			}
			// Random contents: a disk (or a hypervisor under it) may
			// shortcut zeros, which would flatter the plaintext targets.
			rand.Read(data)
			aligned := (s.dataGPA + 4095) &^ 4095
			s.data = data[aligned-s.dataGPA:][:bs]
			s.dataGPA = aligned
			s.stGPA, s.st, _ = fe.Alloc(1)
			slots[q] = append(slots[q], s)
		}
	}
	var wg sync.WaitGroup
	counts := make([]int, queues)
	errs := make([]error, queues)
	deadline := time.Now().Add(dur)
	for q := 0; q < queues; q++ {
		wg.Add(1)
		go func(q int) {
			defer wg.Done()
			dq := fe.Queues[q]
			rng := mrand.New(mrand.NewPCG(uint64(q), 7))
			blocks := uint64(size) / uint64(bs)
			next := uint64(q) * blocks / uint64(queues)
			typ := uint32(0)
			if write {
				typ = 1
			}
			byHead := map[uint16]*slot{}
			// A guest writes data it has just produced. Each write's
			// buffer is refilled from a random pool, at an offset that
			// moves on every time, before it is submitted: writing the
			// same untouched buffers again and again was measurably
			// faster on this machine's virtual disk than writing freshly
			// written memory, which favoured the targets that write guest
			// memory as it is (a, c) over those that write a transformed
			// copy (b, d).
			var pool []byte
			poolOff := 0
			if write {
				pool = make([]byte, 4<<20+bs)
				rand.Read(pool)
			}
			submit := func(s *slot) {
				if write {
					copy(s.data, pool[poolOff:])
					poolOff = (poolOff + 4096 + 512) % (len(pool) - bs)
				}
				var blk uint64
				if seq {
					blk = next % blocks
					next++
				} else {
					blk = rng.Uint64N(blocks)
				}
				binary.LittleEndian.PutUint32(s.hdr, typ)
				binary.LittleEndian.PutUint64(s.hdr[8:], blk*uint64(bs)/512)
				head, err := dq.Add([]vhostuser.Buf{{Addr: s.hdrGPA, Len: 16}, {Addr: s.dataGPA, Len: uint32(bs), Write: !write}, {Addr: s.stGPA, Len: 1, Write: true}})
				if err != nil {
					errs[q] = err
					return
				}
				byHead[head] = s
			}
			for i := range slots[q] {
				submit(&slots[q][i])
			}
			dq.Kick()
			var done []vhostuser.Completion
			var ready []*slot
			for time.Now().Before(deadline) && errs[q] == nil {
				dq.Wait(100 * time.Millisecond)
				done = dq.Reap(done[:0])
				// Take every completion off the books before resubmitting:
				// Reap has already freed their descriptors for reuse.
				ready = ready[:0]
				for _, c := range done {
					s := byHead[c.Head]
					delete(byHead, c.Head)
					if s == nil {
						errs[q] = fmt.Errorf("completion for head %d, which is not in flight (in flight: %d)", c.Head, len(byHead))
						return
					}
					if s.st[0] != 0 {
						errs[q] = fmt.Errorf("status %d", s.st[0])
						return
					}
					counts[q]++
					ready = append(ready, s)
				}
				for _, s := range ready {
					submit(s)
				}
				if len(done) > 0 {
					dq.Kick()
				}
			}
		}(q)
	}
	wg.Wait()
	total := 0
	for q := range counts {
		if errs[q] != nil {
			return 0, errs[q]
		}
		total += counts[q]
	}
	return float64(total), nil
}
