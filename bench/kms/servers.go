package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/azote/azote/bench/internal/host"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/controller"
)

// The peer, as the issue names it. The Go module proxy serves it; it is
// built at run time, never vendored.
const (
	localKMSModule  = "github.com/nsmithuk/local-kms"
	localKMSVersion = "v0.0.0-20260228092603-2a5e92d09ab6"
)

// region is azoted's default --region; local-kms is given the same.
const region = "local"

// kmsAll is the bench user's inline policy. The key has the default key
// policy, which lets the account's IAM policies decide.
const kmsAll = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}`

// server is a KMS under load: where it answers, as whom the clients sign,
// the key they use, and its process (for its CPU time).
type server struct {
	name     string
	endpoint string
	ca       []byte // PEM roots of its HTTPS certificate; nil for plain HTTP
	creds    aws.Credentials
	keyID    string
	pid      int
	calls    atomic.Int64 // KMS calls made to it
	azoted   *host.Azoted // nil for local-kms
	stop     func()
}

// client returns an unmodified aws-sdk-go-v2 KMS client for s: the SDK's
// default HTTP transport, given s's CA and an idle pool as large as the
// number of clients sharing it (the SDK's default keeps 10 idle
// connections per host, which would make an HTTP/1.1 server reconnect at
// c=64), and no retries, so that every error is counted.
func (s *server) client(conc int) (*kms.Client, func()) {
	tr := awshttp.NewBuildableClient().GetTransport()
	if s.ca != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.ca)
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.MaxIdleConns = max(tr.MaxIdleConns, conc)
	tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, conc)
	cfg := aws.Config{Region: region, HTTPClient: &http.Client{Transport: tr},
		Credentials: credentials.StaticCredentialsProvider{Value: s.creds},
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} }}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(s.endpoint) }), tr.CloseIdleConnections
}

// createKey makes the symmetric key the load uses, through the SDK.
func (s *server) createKey() error {
	cl, done := s.client(1)
	defer done()
	s.calls.Add(1)
	out, err := cl.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String("bench/kms")})
	if err != nil {
		return fmt.Errorf("%s: CreateKey: %w", s.name, err)
	}
	s.keyID = aws.ToString(out.KeyMetadata.KeyId)
	return nil
}

// trail is what azoted's audit trail has appended since it started.
func (s *server) trail() (audit.Stats, error) {
	var out struct {
		Stats audit.Stats `json:"Stats"`
	}
	err := client.New(s.azoted.Socket).Call(context.Background(), "audit:GetTrailInfo", nil, &out)
	return out.Stats, err
}

// azotedChild, as the first argument, makes this command azoted itself
// (controller.Main, as cmd/azoted runs it), writing a CPU profile to the
// file profileEnv names: -cpuprofile starts azoted so.
const (
	azotedChild = "azoted-child"
	profileEnv  = "AZOTE_BENCH_KMS_CPUPROFILE"
)

func runAzoted(args []string) int {
	var f *os.File
	if p := os.Getenv(profileEnv); p != "" {
		var err error
		if f, err = os.Create(p); err != nil {
			fmt.Fprintln(os.Stderr, "azoted (bench/kms):", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "azoted (bench/kms):", err)
			return 1
		}
	}
	code := controller.Main(args)
	if f != nil {
		pprof.StopCPUProfile()
		f.Close()
	}
	return code
}

// startAzoted runs a private azoted with an HTTPS listener on loopback,
// initialises its account, makes the bench user and its access key, and
// the key, through the SDK.
func startAzoted(c config, progress io.Writer) (*server, error) {
	const prefix, listen = "azote-bench-kms-", "127.0.0.1:0"
	var a *host.Azoted
	var err error
	if c.cpuprofile != "" {
		exe, err2 := os.Executable()
		prof, err3 := filepath.Abs(c.cpuprofile)
		if err2 != nil || err3 != nil {
			return nil, fmt.Errorf("-cpuprofile: %v %v", err2, err3)
		}
		fmt.Fprintf(progress, "azoted runs as %s %s, its CPU profile to %s\n", exe, azotedChild, prof)
		a, err = host.StartCommand([]string{exe, azotedChild}, []string{profileEnv + "=" + prof}, prefix, listen)
	} else {
		a, err = host.Start(c.bin, prefix, listen)
	}
	if err != nil {
		return nil, err
	}
	s := &server{name: "azoted", azoted: a, pid: a.Pid(), stop: a.Stop}
	fail := func(err error) (*server, error) {
		a.Stop()
		return nil, err
	}
	if s.endpoint, err = a.Endpoint(30 * time.Second); err != nil {
		return fail(err)
	}
	ctx := context.Background()
	if s.ca, err = a.InitAccount(ctx); err != nil {
		return fail(fmt.Errorf("initialising azoted's account: %w", err))
	}
	if s.creds, err = a.User(ctx, "bench", kmsAll); err != nil {
		return fail(fmt.Errorf("making the bench user: %w", err))
	}
	if err := s.createKey(); err != nil {
		return fail(err)
	}
	return s, nil
}

// buildLocalKMS builds local-kms into dir with the go command, outside
// azote's module, and returns the binary's path.
func buildLocalKMS(dir string) (string, error) {
	cmd := exec.Command("go", "install", localKMSModule+"@"+localKMSVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %v\n%s", localKMSModule, localKMSVersion, err, out)
	}
	return filepath.Join(dir, "local-kms"), nil
}

var localKMSStarted = regexp.MustCompile(`Local KMS started on \S*:([0-9]+)`)

// startLocalKMS runs bin with its database under tmp on a port the
// kernel picks (PORT=0: local-kms binds every address, there is no
// setting for one; the clients use 127.0.0.1), and makes the key.
func startLocalKMS(bin, tmp string) (*server, error) {
	dir := filepath.Join(tmp, "local-kms-run")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "local-kms.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT=0", "KMS_ACCOUNT_ID=111122223333", "KMS_REGION="+region,
		"KMS_DATA_PATH="+filepath.Join(dir, "data"), "KMS_SEED_PATH="+filepath.Join(dir, "no-seed.yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	s := &server{name: "local-kms", pid: cmd.Process.Pid, stop: stop,
		creds: aws.Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}
	for deadline := time.Now().Add(30 * time.Second); s.endpoint == ""; {
		b, _ := os.ReadFile(logPath)
		if m := localKMSStarted.FindSubmatch(b); m != nil {
			s.endpoint = "http://127.0.0.1:" + string(m[1])
			break
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("local-kms exited:\n%s", b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("local-kms did not say where it listens; its log:\n%s", b)
		}
	}
	if err := s.createKey(); err != nil {
		stop()
		return nil, err
	}
	return s, nil
}
