package main

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// flow is the shared state of one measurement's senders and receivers.
// Senders keep at most window frames in flight (sent and neither
// received nor given up for lost), so that no side of a path outruns the
// other and burns the two cores on frames that will be dropped: every
// path is measured at what it delivers, not at what it is offered. A
// sender that finds the window full and sees nothing arrive for lossWait
// gives up on what is in flight and goes on (those frames may still come:
// the loss reported is counted at the end, once the path has drained).
type flow struct {
	window   int64
	sent     atomic.Int64
	recv     atomic.Int64
	lost     atomic.Int64 // given up on by the window
	bad      atomic.Int64
	stopSend atomic.Bool
	stop     atomic.Bool

	lossMu   sync.Mutex
	progress []chan struct{} // one per sender
	firstBad atomic.Pointer[string]
}

const lossWait = 20 * time.Millisecond

func newFlow(window int64, senders int) *flow {
	fl := &flow{window: window}
	for range senders {
		fl.progress = append(fl.progress, make(chan struct{}, 1))
	}
	return fl
}

func (fl *flow) stopped() bool     { return fl.stop.Load() }
func (fl *flow) sendStopped() bool { return fl.stopSend.Load() || fl.stop.Load() }

// drain is how long receivers go on after the senders stop.
const drain = 200 * time.Millisecond

func (fl *flow) room() int64 {
	return fl.window - (fl.sent.Load() - fl.recv.Load() - fl.lost.Load())
}

// received records n frames that arrived and wakes the senders. Frames
// given up for lost that arrive after all take their place in the window
// back, so that the window never grows past its size.
func (fl *flow) received(n int64) {
	recv := fl.recv.Add(n)
	for {
		l := fl.lost.Load()
		if l == 0 || fl.sent.Load()-l >= recv {
			break
		}
		if fl.lost.CompareAndSwap(l, max(fl.sent.Load()-recv, 0)) {
			break
		}
	}
	for _, c := range fl.progress {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// check records a frame that arrived other than it was sent.
func (fl *flow) check(err error) {
	if err != nil {
		fl.bad.Add(1)
		s := err.Error()
		fl.firstBad.CompareAndSwap(nil, &s)
	}
}

// waitRoom waits for frames to arrive; after lossWait of nothing it
// gives up on those in flight.
func (fl *flow) waitRoom(sender int) {
	before := fl.recv.Load()
	t := time.NewTimer(lossWait)
	defer t.Stop()
	select {
	case <-fl.progress[sender]:
		return
	case <-t.C:
	}
	fl.lossMu.Lock()
	defer fl.lossMu.Unlock()
	if fl.recv.Load() == before {
		if inflight := fl.sent.Load() - fl.recv.Load() - fl.lost.Load(); inflight > 0 {
			fl.lost.Add(inflight)
		}
	}
}

// payloads makes n UDP payloads of size bytes, each starting with its
// index and filled with random bytes after it.
func payloads(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		p := make([]byte, size)
		rand.Read(p)
		binary.BigEndian.PutUint32(p, uint32(i))
		out[i] = p
	}
	return out
}

// cpuOf is the user and system time of pid (all its threads) in
// seconds.
func cpuOf(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing parenthesis (utime and stime are fields 14
	// and 15 of the whole line).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q %q", pid, f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// selfCPU is this process's user and system time in seconds.
func selfCPU() float64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// sample is one measurement of one path.
type sample struct {
	pps    float64 // frames delivered intact a second
	gbps   float64 // their IP packets' bits a second
	loss   float64 // share of the frames sent in the whole run (warm-up included) that never arrived
	cpuDP  float64 // CPU seconds per Gbit of the data plane's processes (cards or wireguard-go)
	cpuAll float64 // the same, with the driving process (frontends or sockets, and the kernel work it does)
}

// measure runs a path: start launches its senders and receivers on fl,
// which run until fl stops, and returns a function that waits for them;
// pids are the data plane's processes. After warm, it measures for dur.
func measure(fl *flow, size int, pids []int, warm, dur time.Duration, start func(*flow) (func() error, error)) (sample, error) {
	wait, err := start(fl)
	if err != nil {
		return sample{}, err
	}
	stopWith := func(err error) (sample, error) {
		fl.stop.Store(true)
		if werr := wait(); err == nil {
			err = werr
		}
		return sample{}, err
	}
	time.Sleep(warm)
	snap := func() (recv, lost int64, dp, all float64, t time.Time, err error) {
		for _, p := range pids {
			c, err := cpuOf(p)
			if err != nil {
				return 0, 0, 0, 0, t, err
			}
			dp += c
		}
		return fl.recv.Load(), fl.lost.Load(), dp, dp + selfCPU(), time.Now(), nil
	}
	r0, l0, dp0, all0, t0, err := snap()
	if err != nil {
		return stopWith(err)
	}
	time.Sleep(dur)
	r1, l1, dp1, all1, t1, err := snap()
	if err != nil {
		return stopWith(err)
	}
	fl.stopSend.Store(true)
	time.Sleep(drain)
	if _, err := stopWith(nil); err != nil {
		return sample{}, err
	}
	if n := fl.bad.Load(); n > 0 {
		return sample{}, fmt.Errorf("%d frames arrived other than sent; the first: %s", n, *fl.firstBad.Load())
	}
	secs := t1.Sub(t0).Seconds()
	recv := float64(r1 - r0)
	if recv == 0 {
		return sample{}, fmt.Errorf("no frame arrived in %v (%d given up for lost)", dur, l1-l0)
	}
	s := sample{pps: recv / secs}
	s.gbps = s.pps * float64(size) * 8 / 1e9
	s.loss = float64(fl.sent.Load()-fl.recv.Load()) / float64(fl.sent.Load())
	gbit := s.gbps * secs
	s.cpuDP, s.cpuAll = (dp1-dp0)/gbit, (all1-all0)/gbit
	return s, nil
}

// percentile is the p-th percentile (0-100) of d, nearest rank.
func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	k := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(k, 0), len(s)-1)]
}
