package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
)

// env carries what every command needs.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	socket         string
	output         string // "table", "json" or "yaml"
	query          string // a jq expression applied to the JSON form
	// profile selects signed HTTPS access with a profile of the AWS
	// shared config and credentials files; endpoint overrides its
	// endpoint_url.
	profile  string
	endpoint string
	region   string
	client   *client.Client
	local    bool // the client talks to the local socket
	// caHint explains a refused server certificate when AWS_CA_BUNDLE
	// overrode the profile's ca_bundle.
	caHint string
}

// runFunc runs a verb with its positional arguments once flags are parsed.
type runFunc func(ctx context.Context, pos []string) error

// callThenShow is the run of most verbs: call checks the flags and asks
// azoted (the client is connected by the time it runs, not when the verb
// is built), and show prints the answer in the -o form. A failed call
// prints nothing.
func callThenShow[T any](e *env, call func(ctx context.Context, pos []string) (T, error), show func(*env, T) error) runFunc {
	return func(ctx context.Context, pos []string) error {
		v, err := call(ctx, pos)
		if err != nil {
			return err
		}
		return show(e, v)
	}
}

// command is one verb: use is "verb ARG..." (the arguments are counted
// and checked), short its one-line summary, example one command line.
// build binds the verb's flags to fs and returns what runs it.
type command struct {
	use, short, long, example string
	build                     func(e *env, fs *pflag.FlagSet) runFunc
	// textOnly verbs print text that has no JSON or YAML form; they
	// refuse -o json|yaml and --query instead of ignoring them.
	textOnly bool
	// noClient verbs do not talk to azoted (or connect themselves).
	noClient bool
	// passArgs verbs take further arguments after "--", handed on to
	// another program (instance ssh).
	passArgs bool
}

type noun struct {
	name, short string
	verbs       []command
}

func nouns() []noun {
	return []noun{
		{"instance", "run, inspect and end instances (micro-VMs)", instanceCommands},
		{"image", "build, list and delete boot images", imageCommands},
		{"volume", "create, attach and delete volumes", volumeCommands},
		{"vpc", "virtual private clouds: address blocks, traffic keys, the host gateway", vpcCommands},
		{"subnet", "the subnets of a VPC", subnetCommands},
		{"security-group", "security groups and their rules (stateful, allow only)", securityGroupCommands},
		{"network-interface", "network interfaces: an address, a MAC and groups in a subnet", networkInterfaceCommands},
		{"key-pair", "SSH key pairs for instances (EC2's: import, create, fingerprints)", keyPairCommands},
		{"host", "the host azoted runs on", hostCommands},
		{"iam", "users, groups, roles, policies, access keys and MFA", iamCommands()},
		{"sts", "temporary credentials and who you are", stsCommands},
		{"audit", "search, validate and collect the audit trail", auditCommands},
	}
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct {
	msg string
}

func (u usageError) Error() string { return u.msg }

// Main runs the CLI and returns the exit status: 0, 1 when the command
// failed, 2 when the command line was wrong.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	return run(ctx, args, os.Stdin, stdout, stderr)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := e.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		path := "azote"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "%s: %s\n", path, ue.msg)
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
		return 2
	}
	var es exitStatus
	if errors.As(err, &es) {
		return es.code // a remote command's status (instance exec)
	}
	var se sshExit
	if errors.As(err, &se) {
		return se.code // ssh said why itself
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(stderr, "azote: %s: %s\n", ae.Code, ae.Message)
	} else {
		if e.local {
			err = socketHint(err, e.socket)
		}
		var unknownCA x509.UnknownAuthorityError
		if e.caHint != "" && errors.As(err, &unknownCA) {
			err = fmt.Errorf("%w\nhint: %s", err, e.caHint)
		}
		fmt.Fprintf(stderr, "azote: %v\n", err)
	}
	return 1
}

const rootLong = `azote runs micro-VMs with encrypted volumes on one host.

Without credentials it talks to azoted's root-only unix socket (--socket,
AZOTE_SOCKET). With a profile (--profile, AZOTE_PROFILE or AWS_PROFILE) or
AWS_ACCESS_KEY_ID it signs requests to the HTTPS API with the SDK's SigV4
signer. Profiles are read with the AWS SDK's loader from ~/.aws/config and
~/.aws/credentials (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE; for the
credentials file also AZOTE_CREDENTIALS_FILE), so one profile, with its
endpoint_url and ca_bundle, serves both azote and aws.

Every command prints a table (-o table), JSON (-o json) or YAML (-o yaml);
--query filters the JSON form with a jq expression.`

// rootCommand builds the command tree bound to e.
func (e *env) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "azote",
		Short: "the command-line client of azoted",
		Long:  rootLong,
		Example: `  azote instance run --name web --vcpus 2 --memory 512
  azote volume list -o json --query '.[].ID'`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          unknownCommand,
		RunE:          func(c *cobra.Command, _ []string) error { return missingCommand(c) },
		CompletionOptions: cobra.CompletionOptions{
			// completion bash|zsh|fish|powershell, listed with the rest.
			HiddenDefaultCmd: false,
		},
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{msg: err.Error()} })
	root.SetGlobalNormalizationFunc(normalizeFlag)

	pf := root.PersistentFlags()
	pf.StringVarP(&e.output, "output", "o", "table", "output format: table, json or yaml")
	pf.StringVar(&e.query, "query", "", "jq expression applied to the JSON output, e.g. '.[].ID' (implies -o json unless -o yaml)")
	pf.StringVar(&e.socket, "socket", envOr("AZOTE_SOCKET", api.DefaultSocket), "azoted's unix socket (AZOTE_SOCKET)")
	pf.StringVar(&e.profile, "profile", os.Getenv("AZOTE_PROFILE"), "profile of the AWS config and credentials files for the signed HTTPS API (AZOTE_PROFILE, AWS_PROFILE)")
	pf.StringVar(&e.endpoint, "endpoint", os.Getenv("AZOTE_ENDPOINT"), "HTTPS endpoint, overriding the profile's endpoint_url (AZOTE_ENDPOINT, AWS_ENDPOINT_URL)")
	pf.StringVar(&e.region, "region", "", "signing region, overriding the profile's (AWS_REGION, AWS_DEFAULT_REGION)")
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return e.checkOutput(c) }

	for _, n := range nouns() {
		nc := &cobra.Command{
			Use:   n.name,
			Short: n.short,
			Args:  unknownCommand,
			RunE:  func(c *cobra.Command, _ []string) error { return missingCommand(c) },
			// cobra sets the distance of the root only.
			SuggestionsMinimumDistance: 2,
		}
		for _, v := range n.verbs {
			nc.AddCommand(e.verbCommand(n.name, v))
		}
		root.AddCommand(nc)
	}
	root.AddCommand(e.verbCommand("", initCommand), e.verbCommand("", versionCommand))
	return root
}

// normalizeFlag maps the old names of the time-range flags to AWS's.
func normalizeFlag(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	switch name {
	case "start", "from", "since":
		name = "start-time"
	case "end", "to":
		name = "end-time"
	}
	return pflag.NormalizedName(name)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// unknownCommand refuses arguments to a command that only has
// subcommands, suggesting the nearest ones.
func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
	}
	return usageError{msg: msg}
}

// missingCommand answers a noun without its verb with a short usage
// error (exit 2); --help lists the verbs on stdout, exit 0.
func missingCommand(c *cobra.Command) error {
	return usageError{msg: "missing command"}
}

// verbCommand makes the cobra command of one verb.
func (e *env) verbCommand(nounName string, v command) *cobra.Command {
	words := strings.Fields(v.use)
	nargs, variadic := 0, false
	for _, w := range words[1:] {
		if !strings.HasPrefix(w, "[") {
			nargs++
		}
		variadic = variadic || strings.HasSuffix(w, "...")
	}
	var run runFunc
	example := "  azote " + strings.TrimSpace(nounName+" "+words[0])
	if v.example != "" {
		example = "  " + strings.ReplaceAll(v.example, "\n", "\n  ")
	}
	c := &cobra.Command{
		Use:     v.use,
		Short:   v.short,
		Long:    v.long,
		Example: example,
		Args: func(c *cobra.Command, args []string) error {
			if v.passArgs && len(args) > nargs && c.ArgsLenAtDash() == nargs {
				return nil
			}
			if len(args) != nargs && !(variadic && len(args) > nargs) {
				want := "no arguments"
				if nargs > 0 {
					want = strings.Join(words[1:], " ")
				}
				return usageError{msg: fmt.Sprintf("want %s, got %d argument(s)", want, len(args))}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if v.textOnly && (e.output != "table" || e.query != "") {
				return usageError{msg: fmt.Sprintf("-o %s/--query: %s prints text only; it has no JSON or YAML form", e.output, c.CommandPath())}
			}
			if !v.noClient {
				if err := e.connect(c.Context()); err != nil {
					return err
				}
			}
			return run(c.Context(), args)
		},
	}
	if v.long == "" && v.short != "" {
		c.Long = strings.ToUpper(v.short[:1]) + v.short[1:] + "."
	}
	run = v.build(e, c.Flags())
	return c
}

// checkOutput validates -o and --query before any command runs.
func (e *env) checkOutput(*cobra.Command) error {
	switch e.output {
	case "table", "json", "yaml":
	default:
		return usageError{msg: fmt.Sprintf("-o %q: want table, json or yaml", e.output)}
	}
	if e.query != "" {
		if _, err := compileQuery(e.query); err != nil {
			return usageError{msg: err.Error()}
		}
		if e.output == "table" {
			e.output = "json"
		}
	}
	return nil
}

// structured reports whether output is JSON or YAML rather than a table.
func (e *env) structured() bool { return e.output != "table" }

func (e *env) progress(format string, args ...any) {
	if e.output == "table" {
		fmt.Fprintf(e.stderr, format+"\n", args...)
	}
}

// list prints a list answer in the -o form: v as JSON or YAML, or the
// table of header and rows.
func (e *env) list(v any, header string, rows [][]string) error {
	if e.structured() {
		return e.emit(v)
	}
	e.table(header, rows)
	return nil
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
