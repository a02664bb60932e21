package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
)

// The metadata test's VPC: its host gateway takes the lowest free address
// of the subnet, imdsGateway, which the harness puts in azoted's
// certificate (--tls-names) so that a guest can check it.
const (
	imdsCIDR    = "10.80.0.0/16"
	imdsSubnet  = "10.80.1.0/24"
	imdsGateway = "10.80.1.4"
	// imdsCredentialLifetime is how long the role sessions azoted mints
	// last in these tests (--instance-credential-lifetime), so that a
	// guest sees them refreshed within a minute.
	imdsCredentialLifetime = "40s"
)

var (
	imdsImageOnce sync.Once
	imdsImageErr  string
)

// imdsImage builds the image whose agent runs testdata/imds.sh, with
// imdsprobe (static).
func imdsImage(t *testing.T, h *harness) {
	t.Helper()
	imdsImageOnce.Do(func() {
		probe := filepath.Join(h.root, "imdsprobe")
		build := exec.Command("go", "build", "-o", probe, "./testdata/imdsprobe")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			imdsImageErr = "go build imdsprobe: " + string(out)
			return
		}
		r := h.azote("image", "build", "--name", "imds", "--agent", filepath.Join(h.bin, "azote-agent"),
			"--binary", probe, "--script", "testdata/imds.sh")
		if r.code != 0 {
			imdsImageErr = r.stderr
		}
	})
	if imdsImageErr != "" {
		t.Fatalf("building the imds image: %s", imdsImageErr)
	}
}

// TestInstanceMetadata boots a guest with an instance profile, user data
// and a key pair in a VPC whose host gateway leads to azoted's API. In
// the guest, the IMDSv2 rules hold (no token 401, X-Forwarded-For 403,
// a bad token 401, unknown paths 404), the SDK's IMDS client reads the
// identity document, and an application with nothing configured gets the
// role's credentials from the SDK's default chain and calls
// GetCallerIdentity with them, as the role's session for this instance,
// across two refreshes. After terminate, the last credentials are dead.
func TestInstanceMetadata(t *testing.T) {
	h := setup(t)
	imdsImage(t, h)
	var vpc api.VPC
	h.okJSON(t, &vpc, "vpc", "create", "--cidr", imdsCIDR, "--name", "imds", "--host-gateway")
	gatewayTap(t, vpc)
	h.ok(t, "subnet", "create", "--vpc", "imds", "--cidr", imdsSubnet, "--name", "imds1")

	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"compute.azote"},"Action":"sts:AssumeRole"}]}`
	h.ok(t, "iam", "create-role", "--role-name", "imds-app", "--assume-role-policy-document", trust)
	h.ok(t, "iam", "create-instance-profile", "--instance-profile-name", "imds-app")
	h.ok(t, "iam", "add-role-to-instance-profile", "--instance-profile-name", "imds-app", "--role-name", "imds-app")
	// What the guest's code may do is the role's policy: here, asking
	// who it is.
	h.ok(t, "iam", "put-role-policy", "--role-name", "imds-app", "--policy-name", "whoami", "--policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}`)
	// A role that does not trust the compute service cannot be passed.
	h.ok(t, "iam", "create-role", "--role-name", "imds-other", "--assume-role-policy-document",
		strings.Replace(trust, "compute.azote", "other.azote", 1))
	h.ok(t, "iam", "create-instance-profile", "--instance-profile-name", "imds-other")
	h.ok(t, "iam", "add-role-to-instance-profile", "--instance-profile-name", "imds-other", "--role-name", "imds-other")
	h.fails(t, api.CodeInvalidParameter, "instance", "run", "--name", "imds-refused", "--image", "imds",
		"--subnet", "imds1", "--iam-instance-profile", "imds-other")

	// The user data names the API (through the host gateway) and holds
	// its CA.
	endpoint, err := os.ReadFile(filepath.Join(h.state, "endpoint"))
	if err != nil {
		t.Fatal(err)
	}
	port := apiPort(t, strings.TrimSpace(string(endpoint)))
	ca, err := os.ReadFile(filepath.Join(h.state, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	userData := "# api https://" + imdsGateway + ":" + itoa(port) + "\n" + string(ca)
	udFile := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(udFile, []byte(userData), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := h.run(t, "imds", 1, 256, "--image", "imds", "--subnet", "imds1",
		"--iam-instance-profile", "imds-app", "--user-data", "file://"+udFile)
	sum := sha256.Sum256([]byte(userData))
	if inst.UserDataSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("instance user data digest %q, want %x", inst.UserDataSHA256, sum)
	}

	line := func(t *testing.T, re string) []string {
		t.Helper()
		m := h.waitConsole(t, inst.ID, regexp.MustCompile(`imds-test: `+re), 1)
		return regexp.MustCompile(`imds-test: ` + re).FindStringSubmatch(m[0])
	}
	t.Run("IMDSv2 rules", func(t *testing.T) {
		line(t, `no-token 401\b`)
		line(t, `forwarded 403\b`)
		line(t, `ttl-too-long 400\b`)
		line(t, `token 200\b`)
		line(t, `instance-id 200 `+inst.ID)
		line(t, `bad-token 401\b`)
		line(t, `unknown-path 404\b`)
		line(t, `user-data 200 `+inst.UserDataSHA256)
		line(t, `sdk-identity `+inst.ID+` `+regexp.QuoteMeta(inst.PrivateIP)+` local`)
	})

	var lastKey string
	t.Run("role credentials", func(t *testing.T) {
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			// What the host saw of the guest's connection to the API.
			for _, c := range [][]string{{"ss", "-tan"}, {"ip", "-4", "addr"}, {"ip", "-4", "route"}, {"ip", "neigh"}} {
				o, _ := exec.Command(c[0], c[1:]...).CombinedOutput()
				t.Logf("%v:\n%s", c, o)
			}
			for _, l := range strings.Split(h.azote("host", "metrics").stdout, "\n") {
				if strings.HasPrefix(l, "azote_interface_") && !strings.HasSuffix(l, " 0") {
					t.Log(l)
				}
			}
		})
		arn := `arn:azote:sts::\d+:assumed-role/imds-app/` + inst.ID
		line(t, `credentials (ASIA\w+) source EC2RoleProvider`)
		line(t, `caller ASIA\w+ `+arn)
		// Three different keys, each accepted by the API: two refreshes.
		deadline := time.Now().Add(4 * time.Minute)
		for {
			out := h.ok(t, "instance", "console", inst.ID, "--tail", "1000000")
			if strings.Contains(out, "imds-test: creds done") {
				keys := regexp.MustCompile(`imds-test: credentials (ASIA\w+)`).FindAllStringSubmatch(out, -1)
				calls := regexp.MustCompile(`imds-test: caller (ASIA\w+) (\S+)`).FindAllStringSubmatch(out, -1)
				seen := map[string]bool{}
				for _, c := range calls {
					if !regexp.MustCompile(`^` + arn + `\r?$`).MatchString(c[2]) {
						t.Fatalf("GetCallerIdentity answered %q, want the role session %s", c[2], arn)
					}
					seen[c[1]] = true
				}
				if len(keys) < 3 || len(seen) < 3 {
					t.Fatalf("%d keys, %d of them used:\n%s", len(keys), len(seen), out)
				}
				lastKey = keys[len(keys)-1][1]
				break
			}
			if strings.Contains(out, "imds-test: error") || time.Now().After(deadline) {

				t.Fatalf("the guest's credential probe did not finish:\n%s\nazoted:\n%s", out, h.azotedLog())
			}
			time.Sleep(2 * time.Second)
		}
	})

	t.Run("audited as the instance's session", func(t *testing.T) {
		if lastKey == "" {
			t.Skip("no role session was used")
		}
		out := h.ok(t, "audit", "lookup", "--principal", lastKey, "-o", "json")
		if !strings.Contains(out, inst.ID) || !strings.Contains(out, "AssumedRole") {
			t.Fatalf("the audit records of the role session's calls do not show the instance:\n%s", out)
		}
	})

	h.ok(t, "instance", "terminate", inst.ID)
	h.waitFor(t, inst.ID, "terminated", func(i api.Instance) bool { return i.State == api.StateTerminated })
	h.ok(t, "vpc", "modify", "imds", "--host-gateway=false")
}
