package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/azote/azote/internal/api"
)

// env carries what every command needs.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	socket         string
	output         string // "table" or "json"
	// profile selects signed HTTPS access with a credentials profile;
	// endpoint overrides the profile's endpoint.
	profile  string
	endpoint string
	client   *api.Client
}

type command struct {
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

var nouns = map[string]map[string]command{
	"instance": instanceCommands,
	"image":    imageCommands,
	"volume":   volumeCommands,
	"host": {
		"info":    {"show the host's CPU, memory, virtualization and engine", hostInfo},
		"metrics": {"print azoted's Prometheus metrics", hostMetrics},
	},
	"init":  {"": {"create the account: root MFA, the first admin user and its key", initAccount}},
	"iam":   iamCommands,
	"sts":   stsCommands,
	"audit": auditCommands,
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct {
	msg     string
	printed bool // the flag package already told the user
}

func (u usageError) Error() string { return u.msg }

// Main runs the CLI and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdin: os.Stdin, stdout: stdout, stderr: stderr, socket: os.Getenv("AZOTE_SOCKET"), output: "table",
		profile: os.Getenv("AZOTE_PROFILE"), endpoint: os.Getenv("AZOTE_ENDPOINT")}
	if e.socket == "" {
		e.socket = api.DefaultSocket
	}
	if len(args) < 1 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		return 2
	}
	verbs, ok := nouns[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "azote: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if _, single := verbs[""]; single {
		// A command without verbs (azote init).
		args = append([]string{args[0], ""}, args[1:]...)
	}
	if len(args) < 2 {
		verbUsage(stderr, args[0], verbs)
		return 2
	}
	cmd, ok := verbs[args[1]]
	if !ok {
		fmt.Fprintf(stderr, "azote: unknown command \"%s %s\"\n", args[0], args[1])
		verbUsage(stderr, args[0], verbs)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	err := cmd.run(ctx, e, args[2:])
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		if !errors.Is(err, flag.ErrHelp) && !ue.printed {
			fmt.Fprintf(stderr, "azote %s %s: %s\n", args[0], args[1], ue.msg)
		}
		return 2
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(stderr, "azote: %s: %s\n", ae.Code, ae.Message)
	} else {
		fmt.Fprintf(stderr, "azote: %v\n", err)
	}
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: azote <noun> <verb> [flags] [args]")
	var ns []string
	for n := range nouns {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	for _, n := range ns {
		verbUsage(w, n, nouns[n])
	}
	fmt.Fprintln(w, "\nEvery command takes -o json. Without a profile it talks to the local root-only socket")
	fmt.Fprintln(w, "(--socket, AZOTE_SOCKET); with --profile NAME (AZOTE_PROFILE) it signs requests to the")
	fmt.Fprintln(w, "HTTPS API with that profile of ~/.azote/credentials (AZOTE_CREDENTIALS_FILE).")
}

func verbUsage(w io.Writer, noun string, verbs map[string]command) {
	var vs []string
	for v := range verbs {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		fmt.Fprintf(w, "  azote %-31s %s\n", strings.TrimSpace(noun+" "+v), verbs[v].summary)
	}
}

// flags returns a FlagSet with the common flags bound to e.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.output, "o", e.output, "output format: table or json")
	fs.StringVar(&e.socket, "socket", e.socket, "azoted's unix socket")
	fs.StringVar(&e.profile, "profile", e.profile, "credentials profile for the signed HTTPS API")
	fs.StringVar(&e.endpoint, "endpoint", e.endpoint, "HTTPS endpoint (overrides the profile's)")
	return fs
}

// parse parses flags that may come before or after positional arguments,
// and checks the number of positionals.
func (e *env) parse(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{msg: err.Error(), printed: true}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(positional) {
		want := "no arguments"
		if len(positional) > 0 {
			want = strings.Join(positional, " ")
		}
		return nil, usageError{msg: fmt.Sprintf("want %s, got %d argument(s)", want, len(pos))}
	}
	if e.output != "table" && e.output != "json" {
		return nil, usageError{msg: fmt.Sprintf("-o %q: want table or json", e.output)}
	}
	if e.profile == "" && e.endpoint == "" {
		e.client = api.NewClient(e.socket)
		return pos, nil
	}
	p, err := loadProfile(e.profile)
	if err != nil {
		return nil, err
	}
	if e.endpoint != "" {
		p.Endpoint = e.endpoint
	}
	if e.client, err = p.client(); err != nil {
		return nil, err
	}
	return pos, nil
}

func (e *env) json(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) progress(format string, args ...any) {
	if e.output == "table" {
		fmt.Fprintf(e.stderr, format+"\n", args...)
	}
}

func (e *env) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// kv prints "key: value" lines, aligned.
func (e *env) kv(pairs [][2]string) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, p := range pairs {
		if p[1] != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", p[0], p[1])
		}
	}
	tw.Flush()
}

func ago(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	return d.String() + " ago"
}

func hostInfo(ctx context.Context, e *env, args []string) error {
	fs := e.flags("host info")
	if _, err := e.parse(fs, args); err != nil {
		return err
	}
	h, err := e.client.HostInfo(ctx)
	if err != nil {
		return err
	}
	if e.output == "json" {
		return e.json(h)
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	e.kv([][2]string{
		{"CPU", h.CPUModel},
		{"Cores", fmt.Sprint(h.Cores)},
		{"Memory", fmt.Sprintf("%d MiB total, %d MiB available", h.MemTotalMiB, h.MemAvailMiB)},
		{"Hardware virtualization", yes(h.HardwareVirt) + " (" + h.VirtReason + ")"},
		{"AES-NI", yes(h.AESNI)},
		{"AVX2", yes(h.AVX2)},
		{"Kernel", h.Kernel},
		{"Engine", h.Engine + " (accel " + h.Accel + ")"},
		{"azoted", h.Version},
	})
	return nil
}

func hostMetrics(ctx context.Context, e *env, args []string) error {
	fs := e.flags("host metrics")
	if _, err := e.parse(fs, args); err != nil {
		return err
	}
	m, err := e.client.Metrics(ctx)
	if err != nil {
		return err
	}
	_, err = io.WriteString(e.stdout, m)
	return err
}
