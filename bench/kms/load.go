package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// sample is what one or more loads of a server measured.
type sample struct {
	pairs, errors int64
	elapsed       time.Duration
	lat           []time.Duration // of every pair that succeeded
	sorted        bool
	serverCPU     time.Duration // user+system time of the server's process
	clientCPU     time.Duration // of this process, the clients
	firstErr      string
	// Errors of the warm-up, which is not measured: a client's first
	// calls open its connections.
	warmErrors   int64
	warmFirstErr string
	median       float64 // pairs/s: the median of the rounds
}

func (s *sample) rate() float64 { return float64(s.pairs) / s.elapsed.Seconds() }

func (s *sample) add(o *sample) {
	s.pairs += o.pairs
	s.errors += o.errors
	s.elapsed += o.elapsed
	s.lat = append(s.lat, o.lat...)
	s.sorted = false
	s.serverCPU += o.serverCPU
	s.clientCPU += o.clientCPU
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
	s.warmErrors += o.warmErrors
	if s.warmFirstErr == "" {
		s.warmFirstErr = o.warmFirstErr
	}
}

// pct is the p-quantile of the pairs' latencies (1: the longest).
func (s *sample) pct(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	if !s.sorted {
		slices.Sort(s.lat)
		s.sorted = true
	}
	return s.lat[min(len(s.lat)-1, int(p*float64(len(s.lat))))]
}

func (s *sample) perPair(d time.Duration) time.Duration {
	if s.pairs == 0 {
		return 0
	}
	return d / time.Duration(s.pairs)
}

// measure loads s with conc clients for warm, uncounted, then for dur.
func measure(s *server, conc int, warm, dur time.Duration) (*sample, error) {
	cl, done := s.client(conc)
	defer done()
	var w *sample
	if warm > 0 {
		w = drive(s, cl, conc, warm)
	}
	s0, err := procCPU(s.pid)
	if err != nil {
		return nil, err
	}
	c0 := selfCPU()
	smp := drive(s, cl, conc, dur)
	s1, err := procCPU(s.pid)
	if err != nil {
		return nil, err
	}
	smp.serverCPU, smp.clientCPU = s1-s0, selfCPU()-c0
	if w != nil {
		smp.warmErrors, smp.warmFirstErr = w.errors, w.firstErr
	}
	return smp, nil
}

// drive runs conc clients, sharing cl, for dur: each makes pairs of
// GenerateDataKey and Decrypt of its CiphertextBlob, one after the other,
// and checks that Decrypt gives back the data key's plaintext.
func drive(s *server, cl *kms.Client, conc int, dur time.Duration) *sample {
	ctx, cancel := context.WithTimeout(context.Background(), dur+time.Minute)
	defer cancel()
	res := &sample{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var n, errs int64
			var first string
			for time.Now().Before(deadline) {
				t0 := time.Now()
				err := pair(ctx, s, cl)
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
					time.Sleep(time.Millisecond) // a server that fails fast is not hammered
					continue
				}
				n++
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.pairs += n
			res.errors += errs
			res.lat = append(res.lat, lat...)
			if res.firstErr == "" {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func pair(ctx context.Context, s *server, cl *kms.Client) error {
	s.calls.Add(1)
	g, err := cl.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &s.keyID, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		return fmt.Errorf("calling GenerateDataKey: %w", err)
	}
	if len(g.Plaintext) != 32 || len(g.CiphertextBlob) == 0 {
		return fmt.Errorf("a %d-byte plaintext and a %d-byte blob from GenerateDataKey", len(g.Plaintext), len(g.CiphertextBlob))
	}
	s.calls.Add(1)
	d, err := cl.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: g.CiphertextBlob, KeyId: &s.keyID})
	if err != nil {
		return fmt.Errorf("calling Decrypt: %w", err)
	}
	if !bytes.Equal(d.Plaintext, g.Plaintext) {
		return errors.New("the plaintext from Decrypt is not the data key GenerateDataKey returned")
	}
	return nil
}

// procCPU is the user and system time pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// After the command's name, in parentheses: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v %v", pid, err1, err2)
	}
	return time.Duration(u+k) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machine describes the machine: CPU, cores, hypervisor (as the kernel
// logged it, when dmesg is readable), Go, and the load when the run began.
func machine() string {
	model, cores := "unknown CPU", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch strings.TrimSpace(k) {
			case "processor":
				cores++
			case "model name":
				if cores == 1 {
					model = strings.TrimSpace(v)
				}
			}
		}
	}
	hv := "dmesg not readable"
	if out, err := exec.Command("dmesg").Output(); err == nil {
		hv = "no hypervisor in dmesg"
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(strings.ToLower(l), "hypervisor") {
				if _, rest, ok := strings.Cut(l, "] "); ok {
					l = rest
				}
				hv = "dmesg: " + strconv.Quote(strings.TrimSpace(l))
				break
			}
		}
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("machine: %s, %d cores, %s; %s %s/%s; load average %s at start",
		model, cores, hv, runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
}
