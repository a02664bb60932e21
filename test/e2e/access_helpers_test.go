package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/azote/azote/internal/api"
)

// socketsOf lists the TCP and UDP sockets of pid, read from the kernel's
// tables of the process's network namespace.
func socketsOf(pid int) (tcp []string, udp []string, err error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	read := func(table string) []string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			return nil
		}
		var out []string
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && inodes[f[9]] {
				// local, remote, state
				out = append(out, f[1]+" "+f[2]+" "+f[3])
			}
		}
		return out
	}
	tcp = append(read("tcp"), read("tcp6")...)
	udp = append(read("udp"), read("udp6")...)
	return tcp, udp, nil
}

// passiveViolations checks that every TCP socket of pid is the API
// listener or a connection accepted on it (local port = API port), and
// that it has no UDP socket at all.
func passiveViolations(pid int, port int) []string {
	tcp, udp, err := socketsOf(pid)
	if err != nil {
		return nil // the process is gone
	}
	var bad []string
	hexPort := fmt.Sprintf(":%04X", port)
	for _, s := range tcp {
		f := strings.Fields(s)
		if !strings.HasSuffix(f[0], hexPort) {
			bad = append(bad, "tcp "+s)
		}
	}
	for _, s := range udp {
		bad = append(bad, "udp "+s)
	}
	return bad
}

func apiPort(t *testing.T, endpoint string) int {
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// watchPassive samples azoted's sockets every 20 ms until stopped and
// fails the test on any socket that is not the API's.
func watchPassive(t *testing.T, pid int, endpoint string) func() {
	port := apiPort(t, endpoint)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	samples := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			v := passiveViolations(pid, port)
			mu.Lock()
			bad = append(bad, v...)
			samples++
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		if len(bad) > 0 {
			t.Errorf("azoted had sockets other than its API's (%d samples): %v", samples, bad)
		}
		if samples < 10 {
			t.Errorf("only %d socket samples taken", samples)
		}
	}
}

// checkPassive checks the sockets now, and that the check can see an
// accepted connection at all (so it is not vacuous).
func checkPassive(t *testing.T, pid int, endpoint string) {
	port := apiPort(t, endpoint)
	if v := passiveViolations(pid, port); len(v) > 0 {
		t.Fatalf("azoted sockets other than the API's: %v", v)
	}
	tcp, _, err := socketsOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	listening := false
	for _, s := range tcp {
		if strings.HasSuffix(s, " 0A") {
			listening = true
		}
	}
	if !listening {
		t.Fatalf("the socket check does not see azoted's listener: %v", tcp)
	}
}

// trailFiles lists the files of one kind of the trail, oldest first.
func trailFiles(t *testing.T, dir, suffix, top string) []string {
	var out []string
	filepath.WalkDir(filepath.Join(dir, top), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, suffix) {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatalf("no %s files under %s/%s", suffix, dir, top)
	}
	return out
}

// rewriteLog changes one record of a log file, as an attacker with root
// on the host would, and writes a well-formed file back.
func rewriteLog(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Records []map[string]any `json:"Records"`
	}
	if err := json.Unmarshal(plain, &doc); err != nil || len(doc.Records) == 0 {
		t.Fatalf("%s: %v", path, err)
	}
	doc.Records[0]["eventName"] = "NothingHappened"
	out, _ := json.Marshal(doc)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(out)
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// auditTamperCases tampers with the host's trail in each way an attacker
// might and checks `azote audit validate` names it; each case is undone
// before the next.
func auditTamperCases(t *testing.T, a *accessHost) {
	dir := filepath.Join(a.state, "audit")
	a.ok("audit", "validate") // at least one digest covering finished logs
	a.ok("sts", "get-caller-identity", "--profile", "admin")
	a.ok("audit", "validate")
	logs := trailFiles(t, dir, ".json.gz", "logs")
	digests := trailFiles(t, dir, ".json.gz", "digests")
	if len(logs) < 2 || len(digests) < 2 {
		t.Fatalf("%d logs, %d digests: not enough to tamper with", len(logs), len(digests))
	}
	backup := func(paths ...string) func() {
		saved := map[string][]byte{}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			saved[p] = b
		}
		return func() {
			for p, b := range saved {
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	expect := func(name, kind string) {
		t.Helper()
		r := a.run(nil, "audit", "validate")
		if r.code != 1 || !strings.Contains(r.stdout, kind) {
			t.Errorf("%s: validate exit %d, want a %q problem:\n%s%s", name, r.code, kind, r.stdout, r.stderr)
		}
	}
	cases := []struct {
		name, kind string
		files      []string
		tamper     func()
	}{
		{"one byte edited", "modified", logs[:1], func() {
			b, _ := os.ReadFile(logs[0])
			b[len(b)/2] ^= 0x01
			os.WriteFile(logs[0], b, 0o600)
		}},
		{"log file deleted", "deleted", logs[:1], func() { os.Remove(logs[0]) }},
		{"digest dropped", "missing-digest", []string{digests[len(digests)-2], digests[len(digests)-2] + ".sig"}, func() {
			os.Remove(digests[len(digests)-2])
			os.Remove(digests[len(digests)-2] + ".sig")
		}},
		{"log files reordered", "out-of-chain", logs[:2], func() {
			a0, _ := os.ReadFile(logs[0])
			a1, _ := os.ReadFile(logs[1])
			os.WriteFile(logs[0], a1, 0o600)
			os.WriteFile(logs[1], a0, 0o600)
		}},
	}
	for _, c := range cases {
		restore := backup(c.files...)
		c.tamper()
		expect(c.name, c.kind)
		restore()
		if r := a.run(nil, "audit", "validate"); r.code != 0 {
			t.Fatalf("after undoing %q the trail does not validate:\n%s%s", c.name, r.stdout, r.stderr)
		}
	}
}

// readTrail returns the text of every log file and journal of a trail.
func readTrail(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if raw, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
		b.Write(raw)
		return nil
	})
	return b.String()
}

// sdkClient signs requests with the AWS SDK's v4 signer for a profile of
// the access host, over HTTPS trusting the account CA.
type sdkClient struct {
	hc     *http.Client
	pool   *x509.CertPool
	creds  aws.Credentials
	newReq func() *http.Request
	sign   func(r *http.Request, c aws.Credentials, at time.Time) *http.Request
	send   func(r *http.Request) (int, api.Error)
}

func (a *accessHost) sdkClient(profile string) *sdkClient {
	t := a.t
	p := readProfileFile(t, a.creds)[profile]
	ca, err := os.ReadFile(p["ca_bundle"])
	if err != nil {
		t.Fatal(err)
	}
	c := &sdkClient{pool: x509.NewCertPool(), creds: aws.Credentials{AccessKeyID: p["aws_access_key_id"], SecretAccessKey: p["aws_secret_access_key"]}}
	c.pool.AppendCertsFromPEM(ca)
	c.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pool}}}
	signer := v4.NewSigner()
	endpoint := a.p.endpoint
	c.newReq = func() *http.Request {
		r, _ := http.NewRequest("GET", endpoint+"/v1/instances", nil)
		r.Header.Set("Amz-Sdk-Invocation-Id", strconv.FormatInt(time.Now().UnixNano(), 10))
		return r
	}
	c.sign = func(r *http.Request, cr aws.Credentials, at time.Time) *http.Request {
		if err := signer.SignHTTP(context.Background(), cr, r, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "azote", "local", at); err != nil {
			t.Fatal(err)
		}
		return r
	}
	c.send = func(r *http.Request) (int, api.Error) {
		resp, err := c.hc.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	return c
}
