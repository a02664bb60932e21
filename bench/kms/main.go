// Command kms measures azoted's KMS against local-kms, in one run and
// through the same client: pairs of GenerateDataKey (AES_256) and Decrypt
// of the CiphertextBlob it returned, each pair made by one of c
// concurrent clients of aws-sdk-go-v2's kms client, on loopback. It prints
// pairs/s and the latency of a pair (p50, p99, max) for both servers at
// each concurrency, the ratios, and whether the goal of issue 14 is met:
// at c=8 azoted makes at least twice local-kms's pairs/s, and azoted's p99
// is at most local-kms's.
//
// azoted is a private one (temporary --state-dir and --socket, HTTPS on
// 127.0.0.1:0) whose account the command initialises over the local
// socket; the load is signed with the access key of an IAM user whose
// inline policy allows kms:*, on a key made with the default key policy,
// so every call is SigV4-verified, authorised (IAM and key policy) and
// durably audited before it is answered. local-kms
// (github.com/nsmithuk/local-kms, built into a temporary directory at run
// time unless -local-kms names a binary) serves plain HTTP and checks no
// signature.
//
//	CGO_ENABLED=0 go build -o bin/ ./cmd/... && go run ./bench/kms -bin bin
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/azote/azote/bench/internal/stats"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == azotedChild {
		os.Exit(runAzoted(os.Args[2:]))
	}
	var c config
	flag.StringVar(&c.bin, "bin", "bin", "directory with azoted")
	flag.StringVar(&c.localKMS, "local-kms", "", "local-kms binary; empty: build "+localKMSModule+"@"+localKMSVersion+" into a temporary directory")
	flag.BoolVar(&c.peer, "peer", true, "measure local-kms too (the goal needs it)")
	flag.DurationVar(&c.dur, "time", 10*time.Second, "measured duration of each load")
	flag.DurationVar(&c.warm, "warm", 2*time.Second, "load before each measurement, not counted")
	flag.IntVar(&c.rounds, "rounds", 1, "rounds; pairs/s is the median of the rounds, latencies are over every pair")
	conc := flag.String("c", "8,64", "concurrent clients, comma-separated")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of azoted to this file (azoted then runs as this command's own binary, from the same source)")
	flag.Parse()
	var err error
	if c.conc, err = stats.Counts(*conc); err == nil && c.rounds < 1 {
		err = errors.New("-rounds: at least 1")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/kms:", err)
		os.Exit(2)
	}
	if _, err := run(os.Stdout, os.Stderr, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench/kms:", err)
		os.Exit(1)
	}
}

type config struct {
	bin        string
	localKMS   string
	peer       bool
	dur, warm  time.Duration
	rounds     int
	conc       []int
	cpuprofile string
}

// Targets, in the order of the table.
const (
	azote = iota
	localKMS
)

var targetNames = []string{"azoted", "local-kms"}

// The goal of issue 14.
const (
	goalConc  = 8
	goalRatio = 2.0
)

// report is what a run measured: per concurrency and target, the median
// pairs/s of the rounds and the latencies of every pair.
type report struct {
	conc    []int
	targets []int
	results map[int][]*sample // by concurrency, then target
	calls   int64             // KMS calls made to azoted, setup included
	records uint64            // records azoted's trail appended during the run
	fsyncs  uint64
	fsyncT  time.Duration
}

func run(out, progress io.Writer, c config) (*report, error) {
	tmp, err := os.MkdirTemp("", "azote-bench-kms-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(out, "KMS: GenerateDataKey (AES_256) + Decrypt pairs through aws-sdk-go-v2's kms client, loopback")
	fmt.Fprintln(out, machine())

	az, err := startAzoted(c, progress)
	if err != nil {
		return nil, err
	}
	defer az.stop()
	targets := []*server{az}
	if c.peer {
		bin := c.localKMS
		if bin == "" {
			fmt.Fprintf(progress, "building local-kms %s ...\n", localKMSVersion)
			if bin, err = buildLocalKMS(tmp); err != nil {
				return nil, err
			}
		}
		lk, err := startLocalKMS(bin, tmp)
		if err != nil {
			return nil, err
		}
		defer lk.stop()
		targets = append(targets, lk)
	}
	r := &report{conc: c.conc, results: make(map[int][]*sample)}
	for i := range targets {
		r.targets = append(r.targets, i)
	}
	before, _ := az.trail()

	fmt.Fprintf(out, "azoted: HTTPS (TLS 1.3, HTTP/1.1: azoted offers no HTTP/2), every call SigV4-verified, authorised (IAM + key policy) and durably audited\n")
	if c.peer {
		fmt.Fprintf(out, "local-kms %s: plain HTTP/1.1, no signature check, no audit, keys in LevelDB\n", localKMSVersion)
	}
	fmt.Fprintf(out, "%v per load after %v of warm-up, %d round(s); CPU per pair: the server's process, and this one (the clients)\n\n",
		c.dur, c.warm, c.rounds)

	rates := make(map[int][][]float64) // by concurrency, target: each round's pairs/s
	for _, n := range c.conc {
		r.results[n] = make([]*sample, len(targets))
		rates[n] = make([][]float64, len(targets))
	}
	for round := 0; round < c.rounds; round++ {
		for _, n := range c.conc {
			// The first target alternates from round to round, so that
			// neither always runs on the machine the other has just loaded.
			for k := range targets {
				t := (k + round) % len(targets)
				s, err := measure(targets[t], n, c.warm, c.dur)
				if err != nil {
					return nil, fmt.Errorf("%s, c=%d: %v", targetNames[t], n, err)
				}
				fmt.Fprintf(progress, "round %d, c=%d, %s: %.0f pairs/s, %d errors (warm-up: %d)\n", round+1, n, targetNames[t], s.rate(), s.errors, s.warmErrors)
				rates[n][t] = append(rates[n][t], s.rate())
				if r.results[n][t] == nil {
					r.results[n][t] = s
				} else {
					r.results[n][t].add(s)
				}
			}
		}
	}
	for _, n := range c.conc {
		for t := range targets {
			r.results[n][t].median = stats.Median(rates[n][t])
		}
	}
	r.calls = az.calls.Load()
	if after, err := az.trail(); err == nil {
		r.records = after.Records - before.Records
		r.fsyncs = after.Fsyncs - before.Fsyncs
		r.fsyncT = after.FsyncTime - before.FsyncTime
	}
	r.print(out)
	return r, nil
}

func (r *report) print(out io.Writer) {
	fmt.Fprintf(out, "%4s  %-10s %9s %9s %9s %9s %7s %11s %11s\n", "c", "target", "pairs/s", "p50", "p99", "max", "errors", "server CPU", "client CPU")
	for _, n := range r.conc {
		for _, t := range r.targets {
			s := r.results[n][t]
			fmt.Fprintf(out, "%4d  %-10s %9.0f %9s %9s %9s %7d %11s %11s\n", n, targetNames[t], s.median,
				ms(s.pct(0.50)), ms(s.pct(0.99)), ms(s.pct(1)), s.errors, us(s.perPair(s.serverCPU)), us(s.perPair(s.clientCPU)))
			if s.firstErr != "" {
				fmt.Fprintf(out, "      first error: %s\n", s.firstErr)
			}
			if s.warmErrors > 0 {
				fmt.Fprintf(out, "      warm-up (not measured): %d errors, the first: %s\n", s.warmErrors, s.warmFirstErr)
			}
		}
		if len(r.targets) > 1 {
			a, l := r.results[n][azote], r.results[n][localKMS]
			fmt.Fprintf(out, "      azoted / local-kms: pairs/s %.2f×, p99 %.2f×\n", a.median/l.median, float64(a.pct(0.99))/float64(l.pct(0.99)))
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "azoted's audit trail during the run: %d records for %d KMS calls", r.records, r.calls)
	if r.fsyncs > 0 {
		fmt.Fprintf(out, " (%d fsyncs, %.1f records per fsync, %.2f ms per fsync)", r.fsyncs, float64(r.records)/float64(r.fsyncs), float64(r.fsyncT)/1e6/float64(r.fsyncs))
	}
	fmt.Fprintln(out)
	for _, l := range r.verdicts() {
		fmt.Fprintln(out, l)
	}
}

// verdicts says whether the goal is met: at c=8, azoted's pairs/s at least
// twice local-kms's and its p99 at most local-kms's; the p99 is compared
// at every other concurrency measured too.
func (r *report) verdicts() []string {
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	if len(r.targets) < 2 {
		return []string{"goal: not judged (local-kms was not measured)"}
	}
	var out []string
	if _, ok := r.results[goalConc]; !ok {
		out = append(out, fmt.Sprintf("goal: not judged at c=%d (not measured)", goalConc))
	}
	for _, n := range r.conc {
		a, l := r.results[n][azote], r.results[n][localKMS]
		if n == goalConc {
			ratio := a.median / l.median
			out = append(out, fmt.Sprintf("goal c=%d: azoted pairs/s >= %.0f× local-kms: %.2f×, %s", n, goalRatio, ratio, met(ratio >= goalRatio && a.errors == 0)))
		}
		ap, lp := a.pct(0.99), l.pct(0.99)
		out = append(out, fmt.Sprintf("goal c=%d: azoted p99 <= local-kms p99: %s vs %s, %s", n, ms(ap), ms(lp), met(ap <= lp && a.errors == 0)))
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/1e3) }
