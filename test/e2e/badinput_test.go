package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
)

// TestBadInput sends every kind of bad request and checks that each gets
// its stable code and leaves nothing behind: no record, no directory, no
// process.
func TestBadInput(t *testing.T) {
	h := setup(t)
	// One live instance to collide with; it never needs to boot fully.
	keep := h.run(t, "keeper", 1, 128, "--termination-protection")

	before := h.snapshot(t)
	check := func(what string) {
		t.Helper()
		if after := h.snapshot(t); !reflect.DeepEqual(before, after) {
			t.Errorf("%s changed the host:\nbefore %v\nafter  %v", what, before, after)
		}
	}
	cores := runtime.NumCPU()
	for _, tc := range []struct {
		code api.Code
		args []string
	}{
		{api.CodeImageNotFound, []string{"--image", "no-such-image"}},
		{api.CodeInvalidVCPUCount, []string{"--vcpus", "0"}},
		{api.CodeInvalidVCPUCount, []string{"--vcpus", "-3"}},
		{api.CodeInvalidVCPUCount, []string{"--vcpus", fmt.Sprint(cores + 1)}},
		{api.CodeInvalidMemorySize, []string{"--memory", "63"}},
		{api.CodeInvalidMemorySize, []string{"--memory", "0"}},
		{api.CodeInsufficientMemory, []string{"--memory", "100000000"}},
		{api.CodeInvalidName, []string{"--name", "bad name!"}},
		{api.CodeInvalidName, []string{"--name", strings.Repeat("n", 64)}},
		{api.CodeNameInUse, []string{"--name", "keeper"}},
	} {
		args := append([]string{"instance", "run", "--no-wait"}, tc.args...)
		h.fails(t, tc.code, args...)
		check(strings.Join(tc.args, " "))
	}

	// Operations invalid in the instance's state, unknown instances.
	h.fails(t, api.CodeIncorrectInstanceState, "instance", "start", keep.ID)
	h.fails(t, api.CodeInstanceNotFound, "instance", "describe", "i-0000000000000000")
	h.fails(t, api.CodeInstanceNotFound, "instance", "stop", "nobody")
	h.fails(t, api.CodeImageNotFound, "image", "describe", "nothing")
	h.fails(t, api.CodeImageInUse, "image", "delete", "default")

	// Termination protection: terminate fails until it is turned off.
	h.fails(t, api.CodeTerminationProtected, "instance", "terminate", keep.ID)
	if got := h.describe(t, keep.ID); got.State == api.StateTerminated || !pidAlive(got.PID) {
		t.Fatalf("protected instance was harmed: %s pid %d", got.State, got.PID)
	}
	check("refused terminate")

	// Usage errors exit 2 without calling azoted.
	if r := h.azote("instance", "run", "--vcpus", "two"); r.code != 2 {
		t.Errorf("bad flag value: exit %d, want 2", r.code)
	}
	if r := h.azote("instance", "frobnicate"); r.code != 2 {
		t.Errorf("unknown verb: exit %d, want 2", r.code)
	}

	// Malformed and oversized bodies, straight at the socket.
	c := client.New(h.socket)
	ctx := context.Background()
	huge := append([]byte(`{"name":"`), bytes.Repeat([]byte("x"), api.MaxBodyBytes+10)...)
	huge = append(huge, `"}`...)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		status             int
		code               api.Code
	}{
		{"not json", "POST", "/v1/instances", []byte("{nope"), 400, api.CodeMalformedRequest},
		{"wrong type", "POST", "/v1/instances", []byte(`{"vcpus":"2"}`), 400, api.CodeMalformedRequest},
		{"unknown field", "POST", "/v1/instances", []byte(`{"image":"default","vcpus":1,"memory_mib":128,"root":true}`), 400, api.CodeMalformedRequest},
		{"trailing data", "POST", "/v1/instances", []byte(`{"image":"default"} {}`), 400, api.CodeMalformedRequest},
		{"oversized", "POST", "/v1/instances", huge, 413, api.CodeRequestTooLarge},
		{"empty", "POST", "/v1/instances", nil, 400, api.CodeInvalidVCPUCount},
		{"bad wait", "GET", "/v1/instances/" + keep.ID + "?wait=forever", nil, 400, api.CodeInvalidParameter},
		{"no route", "GET", "/v2/anything", nil, 404, api.CodeNotFound},
		{"bad action", "POST", "/v1/instances/" + keep.ID + "/explode", nil, 404, api.CodeNotFound},
		{"bad digest", "PUT", "/v1/blobs/abc", []byte("x"), 400, api.CodeInvalidParameter},
		{"digest mismatch", "PUT", "/v1/blobs/" + strings.Repeat("0", 96), []byte("x"), 400, api.CodeDigestMismatch},
		{"image of missing blobs", "POST", "/v1/images", []byte(`{"name":"x","kernel_sha384":"` + strings.Repeat("1", 96) + `","initrd_sha384":"` + strings.Repeat("2", 96) + `","cmdline":"c"}`), 400, api.CodeBlobNotFound},
	} {
		status, body, err := c.Raw(ctx, tc.method, tc.path, tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var e api.Error
		if json.Unmarshal(body, &e) != nil || status != tc.status || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s: HTTP %d %s, want %d with code %s", tc.name, status, body, tc.status, tc.code)
		}
		check(tc.name)
	}
	blobs, _ := os.ReadDir(filepath.Join(h.state, "images", "sha384"))
	for _, b := range blobs {
		if strings.HasPrefix(b.Name(), ".upload") {
			t.Errorf("a rejected upload left %s", b.Name())
		}
	}

	h.ok(t, "instance", "modify", keep.ID, "--termination-protection=false")
	var term api.Instance
	h.okJSON(t, &term, "instance", "terminate", keep.ID)
	if term.State != api.StateTerminated {
		t.Fatalf("terminate after lifting protection: %s", term.State)
	}
	// Its name is free again.
	h.run(t, "keeper", 1, 128, "--no-wait")
}

// TestSocketRootOnly: the socket file is 0600, and even when its mode is
// opened up, azoted refuses a caller that is not root (SO_PEERCRED).
func TestSocketRootOnly(t *testing.T) {
	h := setup(t)
	st, err := os.Stat(h.socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %o, want 600", st.Mode().Perm())
	}
	// Open the path up to everyone: the directory and the socket file.
	if err := os.Chmod(h.root, 0o711); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(h.root, 0o700)
	if err := os.Chmod(h.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(h.socket, 0o600)
	// A child process running as nobody (65534) asks for the host info.
	cmd := exec.Command(filepath.Join(h.bin, "azote"), "host", "info")
	cmd.Env = []string{"AZOTE_SOCKET=" + h.socket}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	// The binary lives under a 0700 temp dir; run a copy nobody can read.
	exe := filepath.Join(os.TempDir(), fmt.Sprintf("azote-nobody-%d", os.Getpid()))
	data, err := os.ReadFile(filepath.Join(h.bin, "azote"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(exe)
	cmd.Path, cmd.Args[0] = exe, exe
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if err == nil || !strings.Contains(stderr.String(), "AccessDenied") {
		t.Fatalf("non-root caller: err %v, stderr %q; want AccessDenied", err, stderr.String())
	}
	// A root caller over the same socket still works.
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.socket)
	}}
	resp, err := (&http.Client{Transport: tr}).Get("http://azoted/v1/host")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("root caller: %v %v", err, resp)
	}
	resp.Body.Close()
}

// TestImages: building again gives the same content-addressed image, and
// its digests are those of the stored bytes.
func TestImages(t *testing.T) {
	h := setup(t)
	var first, again api.Image
	h.okJSON(t, &first, "image", "describe", "default")
	r := h.azote("image", "build", "--name", "default", "--agent", filepath.Join(h.bin, "azote-agent"), "-o", "json")
	if r.code != 0 {
		t.Fatalf("rebuild: %s", r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &again); err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || again.InitrdSHA384 != first.InitrdSHA384 {
		t.Fatalf("rebuild gave %s/%s, first %s/%s: builds are not reproducible", again.ID, again.InitrdSHA384, first.ID, first.InitrdSHA384)
	}
	for _, d := range []string{first.KernelSHA384, first.InitrdSHA384} {
		out, err := exec.Command("sha384sum", filepath.Join(h.state, "images", "sha384", d)).Output()
		if err != nil || !strings.HasPrefix(string(out), d+" ") {
			t.Errorf("stored blob %s hashes to %q (%v)", d, out, err)
		}
	}
	var list []api.Image
	h.okJSON(t, &list, "image", "list")
	if len(list) != 1 || list[0].ID != first.ID {
		t.Errorf("image list: %+v", list)
	}
	// The same content under a second name is refused, not duplicated.
	h.fails(t, api.CodeNameInUse, "image", "build", "--name", "other", "--agent", filepath.Join(h.bin, "azote-agent"))
}
