package e2e

import (
	"context"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
)

// startHostWith starts an azoted of its own (no guests) with extra flags,
// its state directory on a tmpfs of tmpfsMiB (none if 0).
func startHostWith(t *testing.T, tmpfsMiB int, flags ...string) *accessHost {
	shared := setup(t) // builds the binaries
	dir := t.TempDir()
	a := &accessHost{t: t, bin: shared.bin, dir: dir, state: filepath.Join(dir, "state"), socket: filepath.Join(dir, "sock"), creds: filepath.Join(dir, "credentials"), p: &hostProc{listen: "127.0.0.1:0"}}
	if tmpfsMiB > 0 {
		if err := os.Mkdir(a.state, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", a.state, "tmpfs", 0, "mode=0700,size="+itoa(tmpfsMiB)+"m"); err != nil {
			t.Skipf("cannot mount a tmpfs: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(a.state, syscall.MNT_DETACH) })
	}
	log, err := os.OpenFile(filepath.Join(dir, "azoted.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	args := append([]string{"--state-dir", a.state, "--socket", a.socket, "--listen", a.p.listen}, flags...)
	cmd := exec.Command(filepath.Join(a.bin, "azoted"), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.p.cmd, a.p.waited = cmd, make(chan struct{})
	go func(w chan struct{}) { cmd.Wait(); close(w) }(a.p.waited)
	t.Cleanup(a.stop)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(a.state, "endpoint")); err == nil && len(b) > 0 {
			a.p.endpoint = strings.TrimSpace(string(b))
			return a
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "azoted.log"))
	t.Fatalf("azoted did not publish its endpoint; log:\n%s", b)
	return nil
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// When the disk under the audit trail fills, calls are refused with
// AuditTrailUnavailable; once space is freed azoted serves again by
// itself, without a restart, and the trail still validates.
func TestAuditTrailRecoversWhenDiskFrees(t *testing.T) {
	a := startHostWith(t, 48)
	a.initAccount()
	a.ok("volume", "list")

	filler := filepath.Join(a.state, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	for i := 0; i < 3; i++ {
		a.fails(api.CodeAuditUnavailable, "volume", "list")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := a.run(nil, "volume", "list")
		if r.code == 0 {
			break
		}
		if !strings.Contains(r.stderr, string(api.CodeAuditUnavailable)) || time.Now().After(deadline) {
			t.Fatalf("after freeing space: %s", r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.ok("audit", "validate")
}

// A flood of unsigned requests from one client is answered request by
// request, but writes only a few records and a summary with the count;
// volumes and blobs stop at their quotas.
func TestRefusalFloodAndQuotas(t *testing.T) {
	a := startHostWith(t, 0, "--volume-quota", "24M", "--blob-quota", "1M")
	a.initAccount()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	const flood = 300
	for i := 0; i < flood; i++ {
		req, _ := http.NewRequest("GET", a.p.endpoint+"/v1/instances/"+strings.Repeat("p", 4000), nil)
		req.Header.Set("User-Agent", strings.Repeat("u", 4000))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || e.Code != api.CodeMissingAuthentication {
			t.Fatalf("unsigned request %d: %d %s", i, resp.StatusCode, e.Code)
		}
	}
	var events []map[string]any
	a.okJSON(&events, "audit", "lookup", "--event-name", "Authenticate", "--limit", "1000")
	if len(events) > 20 {
		t.Fatalf("%d records for %d refusals from one client", len(events), flood)
	}
	for _, e := range events {
		b, _ := json.Marshal(e)
		if len(b) > 4096 {
			t.Fatalf("a refusal record of %d bytes", len(b))
		}
	}

	a.ok("volume", "create", "--size", "16M", "--name", "q1")
	a.fails(api.CodeQuotaExceeded, "volume", "create", "--size", "16M", "--name", "q2")
	var vols []api.Volume
	a.okJSON(&vols, "volume", "list")
	if len(vols) != 1 {
		t.Fatalf("volumes after a refusal: %+v", vols)
	}
	// Blobs: over the local socket, as image build uploads them.
	c := client.New(a.socket)
	big := make([]byte, 2<<20)
	sum := sha512.Sum384(big)
	err := c.PutBlob(context.Background(), hex.EncodeToString(sum[:]), big)
	if !api.IsCode(err, api.CodeQuotaExceeded) {
		t.Fatalf("a blob past the quota: %v, want QuotaExceeded", err)
	}
	ents, _ := os.ReadDir(filepath.Join(a.state, "images", "sha384"))
	if len(ents) != 0 {
		t.Fatalf("a refused upload left %d files", len(ents))
	}
}
