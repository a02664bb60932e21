package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
)

// The key pair verbs and the launch's guest flags send what their flags
// say; file:// values are read.
func TestKeyPairVerbsSend(t *testing.T) {
	localOnly(t)
	f := newFakeAzoted(t)
	dir := t.TempDir()
	pub := filepath.Join(dir, "id.pub")
	os.WriteFile(pub, []byte("ssh-ed25519 AAAAC3 me\n"), 0o600)
	script := filepath.Join(dir, "boot.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"key-pair", "import", "--key-name", "laptop", "--public-key-material", "file://" + pub},
			`POST /v1/key-pairs/import {"key_name":"laptop","public_key_material":"ssh-ed25519 AAAAC3 me\n"}`},
		{[]string{"key-pair", "create", "--key-name", "ops", "--key-type", "rsa", "--tag", "team=a"},
			`POST /v1/key-pairs {"key_name":"ops","key_type":"rsa","tags":{"team":"a"}}`},
		{[]string{"key-pair", "list"}, `GET /v1/key-pairs`},
		{[]string{"key-pair", "describe", "ops"}, `GET /v1/key-pairs/ops`},
		{[]string{"key-pair", "delete", "ops"}, `DELETE /v1/key-pairs/ops`},
		{[]string{"instance", "get-user-data", "web"}, `GET /v1/instances/web/user-data`},
		{[]string{"instance", "run", "--name", "web", "--key-name", "ops", "--user-data", "file://" + script, "--metadata-v1", "optional",
			"--metadata-hop-limit", "2", "--no-wait"},
			`POST /v1/instances {"name":"web","image":"default","vcpus":1,"memory_mib":256,"key_name":"ops","user_data":"IyEvYmluL3NoCmVjaG8gaGkK","metadata_options":{"http_tokens":"optional","http_put_response_hop_limit":2}}`},
		{[]string{"instance", "run", "--name", "web", "--user-data", "echo inline", "--no-wait"},
			`POST /v1/instances {"name":"web","image":"default","vcpus":1,"memory_mib":256,"user_data":"ZWNobyBpbmxpbmU="}`},
	} {
		code, _, errs := runArgs(append(tc.args, "--socket", f.sock, "-o", "json")...)
		got := f.take()
		if code != 0 || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%q: exit %d %s\n sent %q\n want %q", tc.args, code, errs, got, tc.want)
		}
	}
	// Too much user data is the command line's mistake, sent nowhere.
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, api.MaxUserData+1), 0o600)
	if code, _, errs := runArgs("instance", "run", "--user-data", "file://"+big, "--socket", f.sock); code != 2 || len(f.take()) != 0 {
		t.Errorf("user data too big: exit %d %s", code, errs)
	}
}

// serveJSON is an azoted that answers every request with v.
func serveJSON(t *testing.T, v any) string {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(v) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// create --output-file writes the private key once, mode 0600, and
// refuses to overwrite a file (before anything is made).
func TestKeyPairCreateOutputFile(t *testing.T) {
	localOnly(t)
	sock := serveJSON(t, api.CreateKeyPairResponse{KeyPair: api.KeyPair{ID: "key-1", KeyName: "ops"}, KeyMaterial: "PRIVATE\n"})
	out := filepath.Join(t.TempDir(), "ops.pem")
	code, stdout, errs := runArgs("key-pair", "create", "--key-name", "ops", "--output-file", out, "--socket", sock)
	if code != 0 || strings.Contains(stdout, "PRIVATE") {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, errs)
	}
	st, err := os.Stat(out)
	if b, _ := os.ReadFile(out); err != nil || st.Mode().Perm() != 0o600 || string(b) != "PRIVATE\n" {
		t.Fatalf("key file: %v %v %q", err, st.Mode(), b)
	}
	if code, _, _ := runArgs("key-pair", "create", "--key-name", "ops", "--output-file", out, "--socket", sock); code == 0 {
		t.Error("an existing key file was overwritten")
	}
}

// instance ssh runs ssh to the instance's private address with a
// known-hosts file holding exactly the reported keys, filed under the
// instance id, and strict checking; with no keys reported it refuses.
func TestInstanceSSH(t *testing.T) {
	localOnly(t)
	bin := t.TempDir()
	record := filepath.Join(bin, "record")
	// A stand-in ssh: records its arguments and the known-hosts file it
	// was handed, and exits 7.
	os.WriteFile(filepath.Join(bin, "ssh"), []byte(`#!/bin/sh
printf '%s\n' "$@" > `+record+`
for a in "$@"; do case "$a" in UserKnownHostsFile=*) cat "${a#UserKnownHostsFile=}" >> `+record+`.kh;; esac; done
exit 7
`), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	inst := api.Instance{ID: "i-0123456789abcdef0", State: api.StateRunning, PrivateIP: "10.0.1.5",
		SSHHostKeys: []string{"ssh-ed25519 AAAAkey1", "ssh-rsa AAAAkey2"}}
	sock := serveJSON(t, inst)
	code, _, errs := runArgs("instance", "ssh", "web", "--socket", sock, "-i", "ops.pem", "--", "uname", "-a")
	if code != 7 {
		t.Fatalf("exit %d (want ssh's 7): %s", code, errs)
	}
	args, _ := os.ReadFile(record)
	got := strings.Split(strings.TrimSpace(string(args)), "\n")
	if !strings.HasPrefix(got[1], "UserKnownHostsFile=") {
		t.Fatalf("args %q", got)
	}
	want := []string{"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=i-0123456789abcdef0",
		"-o", "UpdateHostKeys=no", "-l", "admin", "-i", "ops.pem", "10.0.1.5", "uname", "-a"}
	if strings.Join(got[2:], " ") != strings.Join(want, " ") {
		t.Errorf("ssh args\n got %q\nwant %q", got[2:], want)
	}
	kh, _ := os.ReadFile(record + ".kh")
	if string(kh) != "i-0123456789abcdef0 ssh-ed25519 AAAAkey1\ni-0123456789abcdef0 ssh-rsa AAAAkey2\n" {
		t.Errorf("known hosts %q", kh)
	}
	if _, err := os.Stat(strings.TrimPrefix(got[1], "UserKnownHostsFile=")); !os.IsNotExist(err) {
		t.Errorf("the known-hosts file was left behind: %v", err)
	}

	for _, c := range []struct {
		inst api.Instance
		says string
	}{
		{api.Instance{ID: "i-1", State: api.StateRunning, PrivateIP: "10.0.1.5"}, "no SSH host keys"},
		{api.Instance{ID: "i-1", State: api.StateRunning, SSHHostKeys: inst.SSHHostKeys}, "no network interface"},
		{api.Instance{ID: "i-1", State: api.StateStopped, PrivateIP: "10.0.1.5", SSHHostKeys: inst.SSHHostKeys}, "not running"},
	} {
		os.Remove(record)
		code, _, errs := runArgs("instance", "ssh", "web", "--socket", serveJSON(t, c.inst))
		if code != 1 || !strings.Contains(errs, c.says) {
			t.Errorf("%+v: exit %d %q, want %q", c.inst, code, errs, c.says)
		}
		if _, err := os.Stat(record); err == nil {
			t.Errorf("%+v: ssh ran", c.inst)
		}
	}
}
