package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/sigv4"
	"github.com/azote/azote/internal/iam/mfa"
	"github.com/azote/azote/internal/testutil"
)

// accessHost is an azoted of its own (no guests): these tests initialise
// its account and tamper with its audit trail, which must not disturb the
// shared one.
type accessHost struct {
	t      *testing.T
	bin    string
	dir    string
	state  string
	socket string
	creds  string
	// p is shared by the copies with() makes, so a restart in a subtest
	// is seen by the parent (and its cleanup).
	p *hostProc
}

type hostProc struct {
	listen   string // what the next start binds: the first start picks a port, restarts keep it
	endpoint string
	cmd      *exec.Cmd
	waited   chan struct{}
}

func newAccessHost(t *testing.T) *accessHost {
	shared := setup(t) // builds the binaries
	dir := t.TempDir()
	a := &accessHost{t: t, bin: shared.bin, dir: dir, state: filepath.Join(dir, "state"), socket: filepath.Join(dir, "sock"), creds: filepath.Join(dir, "credentials"), p: &hostProc{listen: "127.0.0.1:0"}}
	a.start()
	t.Cleanup(a.stop)
	return a
}

func (a *accessHost) start() {
	a.t.Helper()
	log, err := os.OpenFile(filepath.Join(a.dir, "azoted.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	defer log.Close()
	os.Remove(filepath.Join(a.state, "endpoint"))
	cmd := exec.Command(filepath.Join(a.bin, "azoted"), "--state-dir", a.state, "--socket", a.socket, "--listen", a.p.listen, "--audit-file-age", "1h")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.p.cmd, a.p.waited = cmd, make(chan struct{})
	go func(w chan struct{}) { cmd.Wait(); close(w) }(a.p.waited)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(a.state, "endpoint")); err == nil && len(b) > 0 {
			a.p.endpoint = strings.TrimSpace(string(b))
			a.p.listen = strings.TrimPrefix(a.p.endpoint, "https://")
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(a.dir, "azoted.log"))
	a.t.Fatalf("azoted did not publish its endpoint; log:\n%s", b)
}

// with returns a copy of a that fails t (a subtest) instead of the parent.
func (a *accessHost) with(t *testing.T) *accessHost {
	b := *a
	b.t = t
	return &b
}

func (a *accessHost) stop() {
	if a.p.cmd != nil && a.p.cmd.Process != nil {
		a.p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.p.waited:
		case <-time.After(10 * time.Second):
			a.p.cmd.Process.Kill()
			<-a.p.waited
		}
	}
}

func (a *accessHost) run(stdin io.Reader, args ...string) result {
	return runCLI(filepath.Join(a.bin, "azote"), []string{"AZOTE_SOCKET=" + a.socket, "AZOTE_CREDENTIALS_FILE=" + a.creds, "AZOTE_PROFILE=", "AZOTE_ENDPOINT="},
		stdin, time.Minute, args...)
}

func (a *accessHost) ok(args ...string) string {
	a.t.Helper()
	r := a.run(nil, args...)
	if r.code != 0 {
		a.t.Fatalf("azote %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func (a *accessHost) okJSON(v any, args ...string) {
	a.t.Helper()
	out := a.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		a.t.Fatalf("azote %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// fails checks the command exits 1 with code as its error.
func (a *accessHost) fails(code api.Code, args ...string) {
	a.t.Helper()
	r := a.run(nil, args...)
	if r.code != 1 || !strings.Contains(r.stderr, "azote: "+string(code)+": ") {
		a.t.Fatalf("azote %s: exit %d, stderr %q; want %s", strings.Join(args, " "), r.code, r.stderr, code)
	}
}

// totp gives the code of secret for the step at offset from now.
func totp(t *testing.T, secret string, offset int) string {
	s, err := mfa.DecodeSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return mfa.StepCode(s, uint64(int64(mfa.Step(time.Now()))+int64(offset)))
}

// initAccount drives the interactive `azote init` like an operator with
// an authenticator app: read the secret it shows, type two codes.
func (a *accessHost) initAccount() (rootSecret string) {
	a.t.Helper()
	cmd := exec.Command(filepath.Join(a.bin, "azote"), "init", "--admin", "admin")
	cmd.Env = cliEnv("AZOTE_SOCKET="+a.socket, "AZOTE_CREDENTIALS_FILE="+a.creds)
	stdin, _ := cmd.StdinPipe()
	stderr, _ := cmd.StderrPipe()
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "Secret (base32): "); ok {
			rootSecret = s
			break
		}
	}
	if rootSecret == "" {
		a.t.Fatal("azote init showed no secret")
	}
	fmt.Fprintf(stdin, "%s\n%s\n", totp(a.t, rootSecret, -1), totp(a.t, rootSecret, 0))
	stdin.Close()
	rest, _ := io.ReadAll(stderr)
	if err := cmd.Wait(); err != nil {
		a.t.Fatalf("azote init: %v\n%s", err, rest)
	}
	if !strings.Contains(out.String(), "shown once") {
		a.t.Fatalf("azote init printed:\n%s", out.String())
	}
	return rootSecret
}

func (a *accessHost) writeProfile(name, akid, secret, token string) {
	a.t.Helper()
	admin := readProfileFile(a.t, a.creds)["admin"]
	f, err := os.OpenFile(a.creds, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "\n[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\nendpoint = %s\nca_bundle = %s\n", name, akid, secret, admin["endpoint"], admin["ca_bundle"])
	if token != "" {
		fmt.Fprintf(f, "aws_session_token = %s\n", token)
	}
}

func readProfileFile(t *testing.T, path string) map[string]map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	var cur map[string]string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			cur = map[string]string{}
			out[strings.Trim(l, "[]")] = cur
		} else if k, v, ok := strings.Cut(l, "="); ok && cur != nil {
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// lookup returns audit records matching the CLI filter args.
func (a *accessHost) lookup(args ...string) []map[string]any {
	a.t.Helper()
	var recs []map[string]any
	a.okJSON(&recs, append([]string{"audit", "lookup", "--limit", "1000"}, args...)...)
	return recs
}

func TestOperatorAccess(t *testing.T) {
	a := newAccessHost(t)
	// Watch azoted's sockets for the whole test: it must never open a
	// connection of its own.
	parent := t
	stopWatch := watchPassive(parent, a.p.cmd.Process.Pid, a.p.endpoint)
	defer func() { stopWatch() }() // the watch is replaced when azoted restarts

	// Before init the network API has nobody to let in.
	a.fails(api.CodeAccountNotInitialized, "sts", "get-session-token", "--root", "--mfa-code", "123456")
	rootSecret := a.initAccount()
	a.fails(api.CodeAccountAlreadyInitialized, "init", "--root-codes", "000000,000000")
	profiles := readProfileFile(t, a.creds)
	if p := profiles["admin"]; p["aws_access_key_id"] == "" || !strings.HasPrefix(p["endpoint"], "https://127.0.0.1:") {
		t.Fatalf("init wrote profile %v", p)
	}
	if st, _ := os.Stat(a.creds); st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %o", st.Mode().Perm())
	}

	// The admin works over HTTPS with SigV4.
	var who map[string]any
	a.okJSON(&who, "sts", "get-caller-identity", "--profile", "admin")
	if who["Type"] != "IAMUser" || !strings.HasSuffix(who["Arn"].(string), ":user/admin") {
		t.Fatalf("admin is %v", who)
	}
	a.ok("instance", "list", "--profile", "admin")

	t.Run("RootHasNoKeys", func(t *testing.T) {
		a := a.with(t)
		// Not even host root can give root an access key.
		a.fails(api.CodeRootAccessKeysDisabled, "iam", "create-access-key", "--user-name", "root")
		// A root session needs MFA, and only host root may ask for one.
		a.fails(api.CodeAccessDenied, "sts", "get-session-token", "--root")
		a.fails(api.CodeInvalidAuthenticationCode, "sts", "get-session-token", "--root", "--mfa-code", "000000")
		a.fails(api.CodeAccessDenied, "sts", "get-session-token", "--root", "--mfa-code", totp(t, rootSecret, 0), "--profile", "admin")
		var out struct {
			Credentials struct{ AccessKeyId, SecretAccessKey, SessionToken string }
		}
		a.okJSON(&out, "sts", "get-session-token", "--root", "--mfa-code", totp(t, rootSecret, 1))
		a.writeProfile("root-session", out.Credentials.AccessKeyId, out.Credentials.SecretAccessKey, out.Credentials.SessionToken)
		a.okJSON(&who, "sts", "get-caller-identity", "--profile", "root-session")
		if who["Type"] != "Root" || who["MFA"] != true {
			t.Fatalf("root session is %v", who)
		}
		// The code was spent.
		a.fails(api.CodeInvalidAuthenticationCode, "sts", "get-session-token", "--root", "--mfa-code", totp(t, rootSecret, 1))
	})

	var adminSecret string
	t.Run("MFARequiredForDangerousActions", func(t *testing.T) {
		a := a.with(t)
		a.fails(api.CodeAccessDenied, "iam", "create-user", "--user-name", "viewer", "--profile", "admin")
		var dev struct{ SerialNumber, Base32StringSeed string }
		a.okJSON(&dev, "iam", "create-virtual-mfa-device", "--virtual-mfa-device-name", "admin", "--profile", "admin")
		adminSecret = dev.Base32StringSeed
		a.ok("iam", "enable-mfa-device", "--profile", "admin", "--serial-number", dev.SerialNumber,
			"--authentication-code1", totp(t, adminSecret, -1), "--authentication-code2", totp(t, adminSecret, 0))
		a.fails(api.CodeInvalidAuthenticationCode, "sts", "get-session-token", "--profile", "admin", "--mfa-code", "123456")
		a.ok("sts", "get-session-token", "--profile", "admin", "--mfa-code", totp(t, adminSecret, 1), "--save-profile", "admin-mfa")
		a.ok("iam", "create-user", "--user-name", "viewer", "--profile", "admin-mfa")
		// Without the session the same admin is still refused.
		a.fails(api.CodeAccessDenied, "iam", "create-user", "--user-name", "other", "--profile", "admin")
	})

	t.Run("ReadOnlyCannotMutate", func(t *testing.T) {
		a := a.with(t)
		a.ok("iam", "attach-user-policy", "--user-name", "viewer", "--policy-arn", "ReadOnlyAccess", "--profile", "admin-mfa")
		var key struct{ AccessKeyId, SecretAccessKey string }
		a.okJSON(&key, "iam", "create-access-key", "--user-name", "viewer", "--profile", "admin-mfa")
		a.writeProfile("viewer", key.AccessKeyId, key.SecretAccessKey, "")
		a.ok("instance", "list", "--profile", "viewer")
		a.ok("volume", "list", "--profile", "viewer")
		a.ok("iam", "list-users", "--profile", "viewer")
		for _, args := range [][]string{
			{"volume", "create", "--size", "16M"},
			{"instance", "terminate", "i-00000000000000000"},
			{"iam", "create-user", "--user-name", "mallory"},
			{"iam", "attach-user-policy", "--user-name", "viewer", "--policy-arn", "AdministratorAccess"},
			{"iam", "create-access-key"},
			{"image", "delete", "default"},
		} {
			a.fails(api.CodeAccessDenied, append(args, "--profile", "viewer")...)
		}
		denied := a.lookup("--principal", "viewer", "--error-code", "AccessDenied")
		if len(denied) < 6 {
			t.Fatalf("%d AccessDenied records for viewer, want 6", len(denied))
		}
		for _, r := range denied {
			if r["sourceIPAddress"] != "127.0.0.1" {
				t.Fatalf("denied call recorded from %v", r["sourceIPAddress"])
			}
		}
	})

	t.Run("ResourceTagConditions", func(t *testing.T) {
		a := a.with(t)
		a.ok("volume", "create", "--size", "8M", "--name", "tag-dev", "--tag", "env=dev", "--profile", "admin-mfa")
		a.ok("volume", "create", "--size", "8M", "--name", "tag-prod", "--tag", "env=prod", "--tag", "team=core", "--profile", "admin-mfa")
		defer a.run(nil, "volume", "delete", "tag-prod", "--now")
		a.fails(api.CodeInvalidParameter, "volume", "create", "--size", "8M", "--tag", "aws:owner=x")
		var v api.Volume
		a.okJSON(&v, "volume", "describe", "tag-prod")
		if v.Tags["env"] != "prod" || v.Tags["team"] != "core" {
			t.Fatalf("tags %v", v.Tags)
		}
		a.ok("iam", "create-user", "--user-name", "dev", "--profile", "admin-mfa")
		a.ok("iam", "put-user-policy", "--user-name", "dev", "--policy-name", "dev-volumes", "--profile", "admin-mfa", "--policy-document",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["compute:DescribeVolumes","compute:DeleteVolume"],"Resource":"*",`+
				`"Condition":{"StringEquals":{"aws:ResourceTag/env":"dev"}}}]}`)
		var key struct{ AccessKeyId, SecretAccessKey string }
		a.okJSON(&key, "iam", "create-access-key", "--user-name", "dev", "--profile", "admin-mfa")
		a.writeProfile("dev", key.AccessKeyId, key.SecretAccessKey, "")
		a.ok("volume", "describe", "tag-dev", "--profile", "dev")
		a.fails(api.CodeAccessDenied, "volume", "describe", "tag-prod", "--profile", "dev")
		a.fails(api.CodeAccessDenied, "volume", "describe", v.ID, "--profile", "dev")
		a.fails(api.CodeAccessDenied, "volume", "delete", "tag-prod", "--now", "--profile", "dev")
		// Launching with a volume attaches it: allowed to launch, and to
		// attach dev volumes only, dev cannot read a prod volume through
		// an instance of its own. Nothing is launched.
		a.ok("iam", "put-user-policy", "--user-name", "dev", "--policy-name", "dev-launch", "--profile", "admin-mfa", "--policy-document",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"compute:RunInstances","Resource":"*"},`+
				`{"Effect":"Allow","Action":"compute:AttachVolume","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/env":"dev"}}}]}`)
		a.fails(api.CodeAccessDenied, "instance", "run", "--name", "thief", "--volume", "tag-dev", "--volume", "tag-prod", "--no-wait", "--profile", "dev")
		a.fails(api.CodeAccessDenied, "instance", "run", "--name", "thief", "--root-volume", "tag-prod", "--no-wait", "--profile", "dev")
		var insts []api.Instance
		a.okJSON(&insts, "instance", "list", "--profile", "admin-mfa")
		for _, i := range insts {
			if i.Name == "thief" {
				t.Fatalf("a refused launch left instance %s", i.ID)
			}
		}
		if got := a.lookup("--principal", "dev", "--event-name", "RunInstances", "--error-code", "AccessDenied"); len(got) != 2 ||
			!strings.Contains(fmt.Sprint(got[0]["resources"]), "volume/"+v.ID) {
			t.Fatalf("refused launches in the audit trail: %v", got)
		}
		a.ok("volume", "delete", "tag-dev", "--now", "--profile", "dev")
	})

	t.Run("SignatureRejections", func(t *testing.T) {
		a := a.with(t)
		sc := a.sdkClient("admin")
		pool, creds, newReq, sign, send := sc.pool, sc.creds, sc.newReq, sc.sign, sc.send
		// The AWS SDK's own signer is a working client.
		good := sign(newReq(), creds, time.Now())
		if status, e := send(good); status != 200 {
			t.Fatalf("SDK-signed request: %d %v", status, e)
		}
		replay := good.Clone(context.Background())
		tampered := sign(newReq(), creds, time.Now())
		tampered.URL.Path = "/v1/volumes"
		unknown := sign(newReq(), aws.Credentials{AccessKeyID: "AKIAAAAAAAAAAAAAAAAA", SecretAccessKey: "x"}, time.Now())
		wrongSecret := sign(newReq(), aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: "not-the-secret"}, time.Now())
		old := sign(newReq(), creds, time.Now().Add(-6*time.Minute))
		noHost := sign(newReq(), creds, time.Now())
		noHost.Header.Set("Authorization", strings.Replace(noHost.Header.Get("Authorization"), "host;", "", 1))
		noDate := sign(newReq(), creds, time.Now())
		noDate.Header.Set("Authorization", strings.Replace(noDate.Header.Get("Authorization"), ";x-amz-date", "", 1))
		for _, c := range []struct {
			name string
			r    *http.Request
			code api.Code
		}{
			{"replay", replay, api.CodeRequestReplayed},
			{"tampered path", tampered, api.CodeSignatureDoesNotMatch},
			{"unknown key", unknown, api.CodeInvalidClientTokenID},
			{"wrong secret", wrongSecret, api.CodeSignatureDoesNotMatch},
			{"clock skew", old, api.CodeRequestExpired},
			{"host unsigned", noHost, api.CodeIncompleteSignature},
			{"date unsigned", noDate, api.CodeIncompleteSignature},
			{"unsigned", newReq(), api.CodeMissingAuthentication},
		} {
			if status, e := send(c.r); status != 403 || e.Code != c.code {
				t.Errorf("%s: %d %+v, want 403 %s", c.name, status, e, c.code)
			}
			recs := a.lookup("--error-code", string(c.code))
			if len(recs) == 0 || recs[0]["sourceIPAddress"] != "127.0.0.1" {
				t.Errorf("%s: no audit record with the source address (%d records)", c.name, len(recs))
			}
		}
		// An inactive key is refused.
		var key struct{ AccessKeyId, SecretAccessKey string }
		a.okJSON(&key, "iam", "create-access-key", "--user-name", "viewer", "--profile", "admin-mfa")
		a.ok("iam", "update-access-key", "--user-name", "viewer", "--access-key-id", key.AccessKeyId, "--status", "Inactive", "--profile", "admin-mfa")
		if status, e := send(sign(newReq(), aws.Credentials{AccessKeyID: key.AccessKeyId, SecretAccessKey: key.SecretAccessKey}, time.Now())); status != 403 || e.Code != api.CodeInvalidClientTokenID {
			t.Errorf("inactive key: %d %+v", status, e)
		}
		// At most two keys per user.
		a.fails(api.CodeLimitExceeded, "iam", "create-access-key", "--user-name", "viewer", "--profile", "admin-mfa")
		// Plain HTTP and TLS below 1.3 are refused.
		if resp, err := http.Get(strings.Replace(a.p.endpoint, "https://", "http://", 1) + "/v1/instances"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Error("plain HTTP answered 200")
			}
		}
		tls12 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}}}
		if _, err := tls12.Get(a.p.endpoint + "/v1/instances"); err == nil {
			t.Error("TLS 1.2 handshake accepted")
		}
	})

	t.Run("NoReplayAcrossRestart", func(t *testing.T) {
		a := a.with(t)
		sc := a.sdkClient("admin")
		signedAt := time.Now()
		req := sc.sign(sc.newReq(), sc.creds, signedAt)
		if status, e := sc.send(req.Clone(context.Background())); status != 200 {
			t.Fatalf("signed request: %d %+v", status, e)
		}
		// A client whose clock runs 2 minutes fast, with a key of its own:
		// its request is dated after the restart below.
		a.ok("iam", "create-user", "--user-name", "fastclock", "--profile", "admin-mfa")
		a.ok("iam", "attach-user-policy", "--user-name", "fastclock", "--policy-arn", "ReadOnlyAccess", "--profile", "admin-mfa")
		var fk struct{ AccessKeyId, SecretAccessKey string }
		a.okJSON(&fk, "iam", "create-access-key", "--user-name", "fastclock", "--profile", "admin-mfa")
		fast := aws.Credentials{AccessKeyID: fk.AccessKeyId, SecretAccessKey: fk.SecretAccessKey}
		ahead := time.Now().Add(2 * time.Minute)
		var fastReq *http.Request
		deadline := time.Now().Add(30 * time.Second)
		for { // the new key may take a moment to be usable
			fastReq = sc.sign(sc.newReq(), fast, ahead)
			status, e := sc.send(fastReq.Clone(context.Background()))
			if status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("request dated 2 min ahead: %d %+v", status, e)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// kill -9 azoted: its replay cache is gone with it. The captured
		// requests must still not be accepted by the new process.
		stopWatch()
		a.p.cmd.Process.Kill()
		<-a.p.waited
		// The restart lands in a later second than the signature's.
		time.Sleep(time.Until(signedAt.Truncate(time.Second).Add(time.Second)))
		a.start()
		stopWatch = watchPassive(parent, a.p.cmd.Process.Pid, a.p.endpoint)
		sc = a.sdkClient("admin")
		if status, e := sc.send(req.Clone(context.Background())); status != 403 || e.Code != api.CodeRequestExpired {
			t.Fatalf("a request replayed after a restart: %d %+v", status, e)
		}
		if status, e := sc.send(fastReq.Clone(context.Background())); status != 403 || e.Code != api.CodeRequestExpired {
			t.Fatalf("a request dated ahead replayed after a restart: %d %+v", status, e)
		}
		if status, e := sc.send(sc.sign(sc.newReq(), sc.creds, time.Now())); status != 200 {
			t.Fatalf("a fresh request after the restart: %d %+v", status, e)
		}
		// The fast client's next request, dated past the mark, is taken.
		if status, e := sc.send(sc.sign(sc.newReq(), fast, ahead.Add(sigv4.MarkMargin+time.Second))); status != 200 {
			t.Fatalf("the fast client's next request after the restart: %d %+v", status, e)
		}
	})

	t.Run("NoOutboundConnections", func(t *testing.T) {
		a := a.with(t)
		checkPassive(t, a.p.cmd.Process.Pid, a.p.endpoint)
	})

	t.Run("IAMHistoryAndDrift", func(t *testing.T) {
		a := a.with(t)
		saved := filepath.Join(a.dir, "iam.json")
		if err := os.WriteFile(saved, []byte(a.ok("iam", "export", "--profile", "admin-mfa")), 0o600); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(a.ok("iam", "export", "--profile", "admin-mfa"), "SecretAccessKey") {
			t.Fatal("export contains a secret")
		}
		a.ok("iam", "diff", saved, "--profile", "admin-mfa")
		a.ok("iam", "attach-user-policy", "--user-name", "viewer", "--policy-arn", "PowerUserAccess", "--profile", "admin-mfa")
		r := a.run(nil, "iam", "diff", saved, "--profile", "admin-mfa")
		if r.code != 1 || !strings.Contains(r.stdout, "+ user/viewer/attached/arn:azote:iam::azote:policy/PowerUserAccess") {
			t.Fatalf("diff after a change: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		var hist []map[string]any
		a.okJSON(&hist, "iam", "history", "--principal", "admin")
		names := map[string]bool{}
		for _, e := range hist {
			names[e["eventName"].(string)] = true
		}
		for _, want := range []string{"AttachUserPolicy", "CreateUser", "CreateAccessKey", "EnableMFADevice"} {
			if !names[want] {
				t.Errorf("iam history lacks %s: %v", want, names)
			}
		}
	})

	t.Run("NoSecretsInTheTrail", func(t *testing.T) {
		a := a.with(t)
		a.ok("audit", "validate") // everything so far in finished, gzip'd files
		trail := readTrail(t, filepath.Join(a.state, "audit"))
		if !strings.Contains(trail, "CreateVirtualMFADevice") || !strings.Contains(trail, "CreateAccessKey") {
			t.Fatal("the trail does not hold the enrolment and key records the test looks into")
		}
		secrets := map[string]string{"root MFA seed": rootSecret, "admin MFA seed": adminSecret}
		for name, p := range readProfileFile(t, a.creds) {
			secrets["secret key of profile "+name] = p["aws_secret_access_key"]
			if p["aws_session_token"] != "" {
				secrets["session token of profile "+name] = p["aws_session_token"]
			}
		}
		for name, s := range secrets {
			if s == "" {
				t.Fatalf("%s unknown to the test", name)
			}
			if strings.Contains(trail, s) {
				t.Errorf("the audit trail contains the %s", name)
			}
		}
	})

	t.Run("AuditValidateCatchesTampering", func(t *testing.T) {
		a := a.with(t)
		a.ok("audit", "validate")
		a.ok("audit", "validate", "--profile", "admin")
		auditTamperCases(t, a)
	})

	t.Run("CollectorDetectsRewrite", func(t *testing.T) {
		a := a.with(t)
		// A collector runs elsewhere with a read-only audit role.
		a.ok("iam", "create-user", "--user-name", "collector", "--profile", "admin-mfa")
		trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:azote:iam::` + who["Account"].(string) + `:user/collector"},"Action":"sts:AssumeRole"}]}`
		a.ok("iam", "create-role", "--role-name", "AuditCollector", "--assume-role-policy-document", trust, "--profile", "admin-mfa")
		a.ok("iam", "put-role-policy", "--role-name", "AuditCollector", "--policy-name", "read-trail", "--policy-document",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["audit:List*","audit:Get*"],"Resource":"*"}]}`, "--profile", "admin-mfa")
		a.ok("iam", "put-user-policy", "--user-name", "collector", "--policy-name", "assume", "--policy-document",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:azote:iam::*:role/AuditCollector"}]}`, "--profile", "admin-mfa")
		var key struct{ AccessKeyId, SecretAccessKey string }
		a.okJSON(&key, "iam", "create-access-key", "--user-name", "collector", "--profile", "admin-mfa")
		a.writeProfile("collector", key.AccessKeyId, key.SecretAccessKey, "")
		a.ok("sts", "assume-role", "--role-arn", "AuditCollector", "--role-session-name", "offhost", "--profile", "collector", "--save-profile", "auditor")
		// The role can read the trail and nothing else.
		a.fails(api.CodeAccessDenied, "instance", "list", "--profile", "auditor")
		a.fails(api.CodeAccessDenied, "audit", "lookup", "--profile", "auditor")

		copyDir := filepath.Join(a.dir, "collected")
		a.ok("audit", "validate") // rotates: everything so far is in finished files
		a.ok("audit", "collect", "--dir", copyDir, "--profile", "auditor")
		a.ok("audit", "validate", "--dir", copyDir)
		// The host rewrites history: one record in a collected log file.
		logs := trailFiles(t, filepath.Join(a.state, "audit"), ".json.gz", "logs")
		rewriteLog(t, logs[0])
		r := a.run(nil, "audit", "collect", "--dir", copyDir, "--profile", "auditor")
		if r.code != 1 || !strings.Contains(r.stdout, "REWRITTEN") {
			t.Fatalf("collect after a rewrite: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// What was collected still validates.
		a.ok("audit", "validate", "--dir", copyDir)
	})
}

// TestAWSCLIKMS: the aws CLI from Debian's awscli package, pointed at
// azoted with --endpoint-url and --ca-bundle and nothing else of azote's,
// makes a KMS key and does an encrypt/decrypt round trip with it; a
// ciphertext whose context differs is refused with KMS's own exception.
func TestAWSCLIKMS(t *testing.T) {
	testutil.RequiresCommand(t, "aws", "awscli")
	// Debian's aws (v2) by its path: a pip-installed aws v1 earlier in
	// PATH is not the one the test is about.
	awsBin := "/usr/bin/aws"
	if _, err := os.Stat(awsBin); err != nil {
		t.Fatalf("Debian's awscli package is not installed (%v)", err)
	}
	a := newAccessHost(t)
	a.initAccount()
	p := readProfileFile(t, a.creds)["admin"]
	home := t.TempDir()
	awsCLI := func(args ...string) (string, string, error) {
		cmd := exec.Command(awsBin, append(args, "--endpoint-url", p["endpoint"], "--ca-bundle", p["ca_bundle"], "--region", "local", "--output", "json")...)
		cmd.Env = append(cliEnv(), "HOME="+home, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
			"AWS_ACCESS_KEY_ID="+p["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY="+p["aws_secret_access_key"], "AWS_PAGER=")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	out, errs, err := awsCLI("kms", "create-key", "--description", "from the aws CLI")
	if err != nil {
		t.Fatalf("aws kms create-key: %v\n%s", err, errs)
	}
	var created struct {
		KeyMetadata struct{ KeyId, Arn, KeyState string }
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.KeyMetadata.KeyState != "Enabled" {
		t.Fatalf("create-key answered %s (%v)", out, err)
	}
	if _, errs, err := awsCLI("kms", "create-alias", "--alias-name", "alias/cli", "--target-key-id", created.KeyMetadata.KeyId); err != nil {
		t.Fatalf("aws kms create-alias: %v\n%s", err, errs)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("the aws CLI's secret"), 0o600)
	out, errs, err = awsCLI("kms", "encrypt", "--key-id", "alias/cli", "--plaintext", "fileb://"+plain, "--encryption-context", "app=cli")
	if err != nil {
		t.Fatalf("aws kms encrypt: %v\n%s", err, errs)
	}
	var enc struct{ CiphertextBlob, KeyId string }
	json.Unmarshal([]byte(out), &enc)
	blob, err := base64.StdEncoding.DecodeString(enc.CiphertextBlob)
	if err != nil || enc.KeyId != created.KeyMetadata.Arn {
		t.Fatalf("encrypt answered %s", out)
	}
	ct := filepath.Join(dir, "ct")
	os.WriteFile(ct, blob, 0o600)
	out, errs, err = awsCLI("kms", "decrypt", "--ciphertext-blob", "fileb://"+ct, "--encryption-context", "app=cli")
	if err != nil {
		t.Fatalf("aws kms decrypt: %v\n%s", err, errs)
	}
	var dec struct{ Plaintext string }
	json.Unmarshal([]byte(out), &dec)
	if got, _ := base64.StdEncoding.DecodeString(dec.Plaintext); string(got) != "the aws CLI's secret" {
		t.Fatalf("decrypt answered %s", out)
	}
	if _, errs, err := awsCLI("kms", "decrypt", "--ciphertext-blob", "fileb://"+ct, "--encryption-context", "app=other"); err == nil || !strings.Contains(errs, "InvalidCiphertextException") {
		t.Fatalf("decrypt with another context: %v\n%s", err, errs)
	}
	if _, errs, err := awsCLI("kms", "describe-key", "--key-id", "alias/none"); err == nil || !strings.Contains(errs, "NotFoundException") {
		t.Fatalf("describe-key of an unknown alias: %v\n%s", err, errs)
	}
}

// TestKMSKilledAndScanned: azoted killed (SIGKILL) while clients create
// KMS keys leaves no half key — every key it lists is whole and usable,
// and every key it acknowledged exists — and what was encrypted before
// still decrypts. Then the state directory, the audit trail and azoted's
// log are scanned: no plaintext and no data key appear in any of them.
func TestKMSKilledAndScanned(t *testing.T) {
	a := newAccessHost(t)
	a.initAccount()
	p := readProfileFile(t, a.creds)["admin"]
	ca, err := os.ReadFile(p["ca_bundle"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := func() *kms.Client {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		return kms.NewFromConfig(aws.Config{Region: "local", HTTPClient: hc,
			Credentials: credentials.NewStaticCredentialsProvider(p["aws_access_key_id"], p["aws_secret_access_key"], "")},
			func(o *kms.Options) { o.BaseEndpoint = aws.String(a.p.endpoint); o.RetryMaxAttempts = 1 })
	}
	ctx := context.Background()
	c := client()
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("kms e2e plaintext that must never be stored")
	ec := map[string]string{"purpose": "e2e"}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: secret, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	dk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k.KeyMetadata.KeyId, KeySpec: kmstypes.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}

	// Clients create keys; azoted is killed under them.
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("under fire")})
				if err != nil {
					continue
				}
				mu.Lock()
				acked[aws.ToString(out.KeyMetadata.KeyId)] = true
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	a.p.cmd.Process.Kill()
	<-a.p.waited
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no CreateKey was answered before the kill")
	}
	a.start()
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	c = client()
	listed := map[string]bool{}
	var marker *string
	for {
		page, err := c.ListKeys(ctx, &kms.ListKeysInput{Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Keys {
			listed[aws.ToString(e.KeyId)] = true
		}
		if !page.Truncated {
			break
		}
		marker = page.NextMarker
	}
	for id := range acked {
		if !listed[id] {
			t.Errorf("key %s was acknowledged before the kill and is gone", id)
		}
	}
	for id := range listed {
		ct, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
		if err != nil {
			t.Fatalf("key %s after the kill: %v (a half key)", id, err)
		}
		if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct.CiphertextBlob}); err != nil {
			t.Fatalf("key %s after the kill: %v", id, err)
		}
	}
	t.Logf("%d keys acknowledged before the kill, %d listed after; all whole", len(acked), len(listed))
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil || !bytes.Equal(dec.Plaintext, secret) {
		t.Fatalf("a ciphertext from before the kill: %v", err)
	}

	a.stop()
	everything := readTrail(t, a.state)
	logb, _ := os.ReadFile(filepath.Join(a.dir, "azoted.log"))
	everything += string(logb)
	for what, s := range map[string][]byte{"the plaintext": secret, "the data key": dk.Plaintext} {
		for _, form := range []string{string(s), base64.StdEncoding.EncodeToString(s), hex.EncodeToString(s)} {
			if strings.Contains(everything, form) {
				t.Errorf("%s is in the state directory, the trail or the log", what)
			}
		}
	}
}
