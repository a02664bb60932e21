// Command net measures the net card's data path card to card, in one run
// and with the same frames, for:
//
//	(a) two azote-card net processes, plaintext encapsulation
//	    (the benchmark's baseline: NetConfig.Plaintext, --allow-plaintext)
//	(b) two azote-card net processes, AES-256-GCM (as azoted runs them)
//	(c) two wireguard-go processes between TUN devices in two network
//	    namespaces (needs root; -wg=false leaves it out)
//
// Each card is driven through the Go vhost-user frontend (internal/
// vhostuser) playing its guest: guest A sends UDP datagrams to guest B
// over 1 or 2 queue pairs, the cards carry them over their loopback
// underlay, and B's frontend checks every frame it receives against the
// one sent. wireguard-go carries the same datagrams (the same IP packet
// sizes and payloads) from a socket in one namespace to a socket in the
// other, one flow per queue pair. Then a 64-byte ping-pong, one datagram
// at a time, gives each path's latency.
//
//	go run ./bench/net -card bin/azote-card
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/azote/azote/bench/internal/stats"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "wg-child" {
		os.Exit(wgChild(os.Args[2:]))
	}
	var c config
	flag.StringVar(&c.card, "card", "bin/azote-card", "azote-card binary")
	flag.DurationVar(&c.dur, "time", 2*time.Second, "duration of each measurement")
	flag.DurationVar(&c.warm, "warm", 500*time.Millisecond, "traffic before each measurement starts")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds; each cell reports the median")
	sizes := flag.String("sizes", "64,1500", "IP packet sizes, comma-separated")
	pairs := flag.String("pairs", "1,2", "queue pairs (wireguard-go: flows), comma-separated")
	flag.IntVar(&c.underlayMTU, "underlay-mtu", 9000, "the underlay MTU the cards are configured for (loopback's is 65536)")
	flag.IntVar(&c.window, "window", 256, "frames in flight per queue pair")
	flag.IntVar(&c.pings, "pings", 2000, "round trips of the ping-pong per path and round")
	flag.BoolVar(&c.wg, "wg", true, "measure wireguard-go too (root: network namespaces, TUN devices)")
	flag.StringVar(&c.only, "only", "abc", "the targets to measure, by letter (the goals need all three)")
	flag.Parse()
	var err error
	if c.sizes, err = stats.Counts(*sizes); err == nil {
		c.pairs, err = stats.Counts(*pairs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/net:", err)
		os.Exit(2)
	}
	if _, err := run(os.Stdout, os.Stderr, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench/net:", err)
		os.Exit(1)
	}
}

type config struct {
	card        string
	dur, warm   time.Duration
	rounds      int
	sizes       []int
	pairs       []int
	underlayMTU int
	window      int
	pings       int
	wg          bool
	only        string
}

// Targets, in the order of the table.
const (
	plain = iota
	aesGCM
	wireguard
)

var targetNames = []string{"(a) card, plaintext", "(b) card, aes-256-gcm", "(c) wireguard-go"}

type cell struct{ size, pairs int }

// report is what a run measured: per cell and target the median of its
// rounds; per target the ping-pong's percentiles over every round trip.
type report struct {
	cells   []cell
	targets []int
	results map[cell][]sample // by target
	drops   map[cell][]string // by target: the cards' drop counters of the last round, when frames were lost
	p50     []time.Duration   // by target
	p99     []time.Duration
}

func run(out, progress io.Writer, c config) (*report, error) {
	for _, s := range c.sizes {
		if s < 64 || s > guestMTU(c.underlayMTU) || s+14+12 > rxBufLen {
			return nil, fmt.Errorf("size %d: from 64 to %d (the guest MTU of underlay MTU %d and the %d-byte receive buffers)",
				s, min(guestMTU(c.underlayMTU), rxBufLen-26), c.underlayMTU, rxBufLen)
		}
	}
	dir, err := os.MkdirTemp("", "azote-bench-net-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r := &report{results: map[cell][]sample{}, drops: map[cell][]string{}}
	for _, t := range []int{plain, aesGCM} {
		if strings.ContainsRune(c.only, rune('a'+t)) {
			r.targets = append(r.targets, t)
		}
	}
	var wg *wgPair
	if c.wg && strings.ContainsRune(c.only, 'c') {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("wireguard-go needs root (network namespaces, TUN devices); -only ab measures the cards alone")
		}
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		if wg, err = startWG(exe, c.underlayMTU-80); err != nil {
			return nil, fmt.Errorf("wireguard-go: %w", err)
		}
		defer wg.stop()
		if err := wgReady(wg); err != nil {
			return nil, err
		}
		r.targets = append(r.targets, wireguard)
	}
	for _, s := range c.sizes {
		for _, p := range c.pairs {
			r.cells = append(r.cells, cell{s, p})
		}
	}
	samples := map[cell][][]sample{}
	for _, ce := range r.cells {
		samples[ce] = make([][]sample, len(targetNames))
		r.drops[ce] = make([]string, len(targetNames))
	}
	rtts := make([][]time.Duration, len(targetNames))
	// Rounds interleave the targets cell by cell, so the cells of a row
	// are measured within seconds of each other and a busy spell of this
	// shared machine hits them alike; the order rotates every round.
	for round := range c.rounds {
		for _, ce := range r.cells {
			for k := range r.targets {
				t := r.targets[(k+round)%len(r.targets)]
				var s sample
				var dr string
				var err error
				if t == wireguard {
					s, err = wgCell(c, wg, ce)
				} else {
					s, dr, err = cardCell(c, dir, t == plain, ce)
				}
				if err != nil {
					return nil, fmt.Errorf("%s, %d bytes, %d pairs: %w", targetNames[t], ce.size, ce.pairs, err)
				}
				samples[ce][t] = append(samples[ce][t], s)
				if dr != "" {
					r.drops[ce][t] = dr
				}
				fmt.Fprintf(progress, "round %d %-24s %4d B %d pairs %10.0f pkt/s %6.2f Gbit/s loss %5.2f%%\n",
					round+1, targetNames[t], ce.size, ce.pairs, s.pps, s.gbps, 100*s.loss)
			}
		}
		for k := range r.targets {
			t := r.targets[(k+round)%len(r.targets)]
			var d []time.Duration
			var err error
			if t == wireguard {
				d, err = wgPingPong(wg, 64, min(c.pings, 100), c.pings)
			} else {
				d, err = cardLatency(c, dir, t == plain)
			}
			if err != nil {
				return nil, fmt.Errorf("%s ping-pong: %w", targetNames[t], err)
			}
			rtts[t] = append(rtts[t], d...)
		}
	}
	for _, ce := range r.cells {
		r.results[ce] = make([]sample, len(targetNames))
		for _, t := range r.targets {
			var m sample
			var pps, gbps, loss, dp, all []float64
			for _, s := range samples[ce][t] {
				pps, gbps, loss = append(pps, s.pps), append(gbps, s.gbps), append(loss, s.loss)
				dp, all = append(dp, s.cpuDP), append(all, s.cpuAll)
			}
			m.pps, m.gbps, m.loss, m.cpuDP, m.cpuAll = stats.Median(pps), stats.Median(gbps), stats.Median(loss), stats.Median(dp), stats.Median(all)
			r.results[ce][t] = m
		}
	}
	r.p50 = make([]time.Duration, len(targetNames))
	r.p99 = make([]time.Duration, len(targetNames))
	for _, t := range r.targets {
		r.p50[t], r.p99[t] = percentile(rtts[t], 50), percentile(rtts[t], 99)
	}
	r.print(out, c)
	return r, nil
}

func (r *report) print(w io.Writer, c config) {
	fmt.Fprintf(w, "median of %d rounds of %v per cell (after %v of traffic), at most %d frames in flight per queue pair\n",
		c.rounds, c.dur, c.warm, c.window)
	fmt.Fprintf(w, "size: the IP packet (UDP payload size-28); card frames carry 14 bytes of Ethernet more; Gbit/s counts IP packets\n")
	fmt.Fprintf(w, "cards: underlay on loopback configured for MTU %d (guest MTU %d); wireguard-go: veth MTU 9000, TUN MTU %d\n",
		c.underlayMTU, guestMTU(c.underlayMTU), c.underlayMTU-80)
	fmt.Fprintf(w, "CPU s/Gbit: CPU seconds per Gbit delivered; dp = the two card or wireguard-go processes, all = dp + this process (frontends or sockets)\n\n")
	fmt.Fprintf(w, "%5s %5s  %-22s %12s %8s %7s %8s %8s\n", "size", "pairs", "target", "pkt/s", "Gbit/s", "loss", "CPU dp", "CPU all")
	for _, ce := range r.cells {
		res := r.results[ce]
		for _, t := range r.targets {
			s := res[t]
			fmt.Fprintf(w, "%5d %5d  %-22s %12.0f %8.3f %6.2f%% %8.2f %8.2f\n", ce.size, ce.pairs, targetNames[t], s.pps, s.gbps, 100*s.loss, s.cpuDP, s.cpuAll)
		}
		if r.has(plain) && r.has(aesGCM) {
			fmt.Fprintf(w, "%5s %5s  b/a %.2f", "", "", res[aesGCM].pps/res[plain].pps)
			if r.has(wireguard) {
				fmt.Fprintf(w, "  b/c %.2f", res[aesGCM].pps/res[wireguard].pps)
			}
			fmt.Fprintln(w)
		}
		for _, t := range r.targets {
			if d := r.drops[ce][t]; d != "" {
				fmt.Fprintf(w, "%5s %5s  %s drops (last round): %s\n", "", "", targetNames[t][:3], d)
			}
		}
	}
	fmt.Fprintf(w, "\n64-byte ping-pong, %d round trips per path and round\n", c.pings)
	fmt.Fprintf(w, "%-24s %10s %10s\n", "target", "p50", "p99")
	for _, t := range r.targets {
		fmt.Fprintf(w, "%-24s %10s %10s\n", targetNames[t], r.p50[t].Round(time.Microsecond), r.p99[t].Round(time.Microsecond))
	}
	fmt.Fprintln(w)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	if !r.has(plain) || !r.has(aesGCM) {
		return
	}
	for _, ce := range r.cells {
		if ce.size != 1500 {
			continue
		}
		res := r.results[ce]
		ba := res[aesGCM].pps / res[plain].pps
		fmt.Fprintf(w, "goal (b) >= 0.8 x (a) at 1500 bytes, %d pairs: %.2f, %s\n", ce.pairs, ba, verdict(ba >= 0.8))
		if r.has(wireguard) {
			bc := res[aesGCM].pps / res[wireguard].pps
			fmt.Fprintf(w, "goal (b) >= 1.0 x (c) at 1500 bytes, %d pairs: %.2f, %s\n", ce.pairs, bc, verdict(bc >= 1.0))
		}
	}
	lat := float64(r.p99[aesGCM]) / float64(r.p99[plain])
	fmt.Fprintf(w, "goal 64-byte ping-pong p99 of (b) <= 1.5 x (a): %.2f, %s\n", lat, verdict(lat <= 1.5))
}

func (r *report) has(t int) bool {
	for _, x := range r.targets {
		if x == t {
			return true
		}
	}
	return false
}

// cardCell measures one cell through two fresh cards.
func cardCell(c config, dir string, plaintext bool, ce cell) (sample, string, error) {
	cp, err := startCards(cardOpts{bin: c.card, dir: dir, plaintext: plaintext, pairs: ce.pairs, underlayMTU: c.underlayMTU})
	if err != nil {
		return sample{}, "", err
	}
	defer cp.stop()
	n := txSlots * ce.pairs
	pays := payloads(n, ce.size-28)
	frames := make([][]byte, n)
	for i := range frames {
		q := uint16(i / txSlots)
		frames[i] = cardFrame(ipA, ipB, macA, macB, 5000+q, 6000+q, pays[i])
	}
	tx := make([][]txSlot, ce.pairs)
	rx := make([][]rxBuf, ce.pairs)
	for q := range ce.pairs {
		if tx[q], err = allocTX(cp.a.fe, frames[q*txSlots:(q+1)*txSlots]); err == nil {
			rx[q], err = allocRX(cp.b.fe, ringSize)
		}
		if err != nil {
			return sample{}, "", err
		}
	}
	fl := newFlow(int64(c.window*ce.pairs), ce.pairs)
	s, err := measure(fl, ce.size, []int{cp.a.pid, cp.b.pid}, c.warm, c.dur, func(fl *flow) (func() error, error) {
		var wg sync.WaitGroup
		errs := make([]error, 2*ce.pairs)
		for q := range ce.pairs {
			wg.Add(2)
			go func() { defer wg.Done(); errs[2*q] = sendLoop(cp.a.fe, q, q, tx[q], fl) }()
			go func() { defer wg.Done(); errs[2*q+1] = receiveLoop(cp.b.fe, q, rx[q], frames, fl) }()
		}
		return func() error { wg.Wait(); return errors.Join(errs...) }, nil
	})
	var dr string
	if err == nil && s.loss > 0 {
		dr = fmt.Sprintf("A %v, B %v", drops(cp.a.metrics), drops(cp.b.metrics))
	}
	return s, dr, err
}

// cardLatency runs the ping-pong through two fresh cards of one pair.
func cardLatency(c config, dir string, plaintext bool) ([]time.Duration, error) {
	cp, err := startCards(cardOpts{bin: c.card, dir: dir, plaintext: plaintext, pairs: 1, underlayMTU: c.underlayMTU})
	if err != nil {
		return nil, err
	}
	defer cp.stop()
	return cardPingPong(cp, 64, min(c.pings, 100), c.pings)
}

// wgCell measures one cell through the running wireguard-go pair.
func wgCell(c config, w *wgPair, ce cell) (sample, error) {
	pays := payloads(c.window*ce.pairs, ce.size-28)
	fl := newFlow(int64(c.window*ce.pairs), ce.pairs)
	return measure(fl, ce.size, w.pids(), c.warm, c.dur, func(fl *flow) (func() error, error) {
		return wgFlows(w, ce.pairs, pays, fl)
	})
}
