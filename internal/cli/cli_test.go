package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func runArgs(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// Help asked for goes to stdout with exit 0; a mistake to stderr, exit 2.
func TestHelpAndUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}, {"volume", "--help"}, {"help", "volume", "create"}, {"volume", "create", "--help"}} {
		code, out, errs := runArgs(args...)
		if code != 0 || !strings.Contains(out, "Usage:") || errs != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want usage on stdout, exit 0", args, code, out, errs)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"instanc", "list"}, "Did you mean this?\n\tinstance"},
		{[]string{"volume", "lst"}, "Did you mean this?\n\tlist"},
		{[]string{"instance", "run", "--vcpus", "two"}, "--vcpus"},
		{[]string{"volume", "describe"}, "want VOLUME, got 0 argument(s)"},
		{[]string{"volume", "list", "-o", "xml"}, `-o "xml": want table, json or yaml`},
		{[]string{"volume", "list", "--query", ".[ "}, "--query"},
		// Text-only verbs refuse structured output instead of ignoring it.
		{[]string{"instance", "console", "web", "-o", "json"}, "prints text only"},
		{[]string{"audit", "lookup", "--bogus"}, "unknown flag: --bogus"},
	} {
		code, out, errs := runArgs(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q on stderr", tc.args, code, out, errs, tc.want)
		}
		if strings.Count(errs, "\n") > 12 {
			t.Errorf("%q: %d lines on stderr; a mistake gets a short answer", tc.args, strings.Count(errs, "\n"))
		}
	}
}

// Every verb has a summary, an example naming the verb, and usage with
// its arguments.
func TestEveryVerbDocumented(t *testing.T) {
	for _, v := range verbs() {
		code, out, _ := runArgs(append(strings.Fields(v), "--help")...)
		if code != 0 {
			t.Fatalf("%s --help: exit %d", v, code)
		}
		if !strings.Contains(out, "Examples:\n  azote "+v) || !strings.Contains(out, "Usage:\n  azote "+v) {
			t.Errorf("%s --help lacks usage or an example of the verb:\n%s", v, out)
		}
	}
	if n := len(verbs()); n < 74 {
		t.Errorf("%d verbs, want the 74 of before and version", n)
	}
}

// The old time-range names are aliases of --start-time/--end-time, and
// audit lookup --since (documented before it existed) works.
func TestTimeRangeAliases(t *testing.T) {
	for _, args := range [][]string{
		{"audit", "lookup", "--since", "2h"}, {"audit", "lookup", "--start", "2h", "--end", "1h"},
		{"audit", "lookup", "--start-time", "2026-11-27T08:00:00Z", "--end-time", "1h"},
		{"audit", "validate", "--from", "24h", "--to", "1h"}, {"iam", "history", "--since", "168h"},
	} {
		if err := parses(args); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
	code, _, errs := runArgs("audit", "lookup", "--start-time", "yesterday", "--socket", "/nonexistent")
	if code != 2 || !strings.Contains(errs, "RFC 3339") {
		t.Errorf("a bad time: exit %d, %q", code, errs)
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, _ := runArgs("completion", sh)
		if code != 0 || !strings.Contains(out, "azote") {
			t.Errorf("completion %s: exit %d, %d bytes", sh, code, len(out))
		}
	}
}

func TestVersionWithoutServer(t *testing.T) {
	code, out, _ := runArgs("version", "-o", "json", "--socket", "/nonexistent", "--query", ".Client")
	if code != 0 || strings.TrimSpace(out) == "" || strings.Contains(out, "{") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	if ua := userAgent(); !strings.HasPrefix(ua, "azote-cli/") {
		t.Errorf("User-Agent %q", ua)
	}
}

func TestEmitQueryYAML(t *testing.T) {
	var out bytes.Buffer
	e := &env{stdout: &out, output: "yaml", query: ".[] | select(.Kind == \"persistent\") | .Name"}
	v := []map[string]any{{"Name": "a", "Kind": "persistent"}, {"Name": "b", "Kind": "instance-store"}}
	if err := e.emit(v); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\n" {
		t.Errorf("yaml query: %q", out.String())
	}
	out.Reset()
	e.output, e.query = "json", ""
	e.emit(map[string]int{"N": 1})
	if out.String() != "{\n  \"N\": 1\n}\n" {
		t.Errorf("json: %q", out.String())
	}
}

func TestParseMetrics(t *testing.T) {
	s, err := parseMetrics("# HELP x y\n# TYPE x counter\nx 3\ny{a=\"1\",b=\"q\\\"z\"} 2.5 1700000000\nz NaN\n")
	if err != nil || s[0].Name != "x" || s[0].Value != 3 || s[1].Labels["b"] != `q"z` || s[1].Value != 2.5 || len(s) != 3 {
		t.Fatalf("%+v %v", s, err)
	}
	var out bytes.Buffer
	if err := (&env{stdout: &out, output: "json"}).emit(s); err != nil || !strings.Contains(out.String(), `"NaN"`) {
		t.Errorf("NaN as JSON: %v %s", err, out.String())
	}
}

// Writing a profile keeps the files' comments, other profiles and keys
// azote does not know, and reads back through the SDK's loader.
func TestSaveProfileKeepsComments(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	t.Setenv("AZOTE_CREDENTIALS_FILE", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_CA_BUNDLE", "") // it would win over the profile's
	before := "# my keys\n[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = s1 ; theirs\n\n[admin]\n# rotated monthly\naws_access_key_id = AKIAOLD\naws_secret_access_key = old\ncli_pager =\n"
	os.WriteFile(creds, []byte(before), 0o600)
	os.WriteFile(filepath.Join(dir, "config"), []byte("# config\n[profile other]\nregion = eu\noutput = json\n"), 0o600)
	// The SDK's loader reads the profile's ca_bundle, so it must exist.
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, otherCA(t), 0o600)
	if _, err := saveProfile(profile{Name: "admin", AccessKeyID: "AKIANEW", Secret: "new", Endpoint: "https://h:8443", CABundle: ca, Region: "local"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(creds)
	want := "# my keys\n[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = s1 ; theirs\n\n[admin]\n# rotated monthly\naws_access_key_id = AKIANEW\naws_secret_access_key = new\ncli_pager =\n"
	if string(got) != want {
		t.Errorf("credentials:\n%s\nwant:\n%s", got, want)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "config"))
	if !strings.HasPrefix(string(conf), "# config\n[profile other]\nregion = eu\noutput = json\n\n[profile admin]\nendpoint_url = https://h:8443\n") {
		t.Errorf("config:\n%s", conf)
	}
	if st, _ := os.Stat(creds); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %o", st.Mode().Perm())
	}
	p, err := loadProfile(context.Background(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	if p.AccessKeyID != "AKIANEW" || p.Secret != "new" || p.Endpoint != "https://h:8443" || p.CABundle != ca || p.Region != "local" {
		t.Errorf("loaded %+v", p)
	}
	// The environment's keys serve when no profile is named, as for aws.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("AWS_SESSION_TOKEN", "tok")
	t.Setenv("AWS_ENDPOINT_URL", "https://e:1")
	p, err = loadProfile(context.Background(), "")
	if err != nil || p.AccessKeyID != "AKIAENV" || p.SessionToken != "tok" || p.Endpoint != "https://e:1" {
		t.Errorf("env: %+v %v", p, err)
	}
	if _, err := loadProfile(context.Background(), "nosuch"); err == nil || !strings.Contains(err.Error(), `profile "nosuch" not found`) {
		t.Errorf("missing profile: %v", err)
	}
}

// A refused local socket gets a hint, not a bare permission denied.
func TestSocketHint(t *testing.T) {
	err := socketHint(fmt.Errorf("cannot reach azoted: %w", syscall.EACCES), "/run/azote/azoted.sock")
	if !strings.Contains(err.Error(), "hint:") || !strings.Contains(err.Error(), "--profile") || !errors.Is(err, syscall.EACCES) {
		t.Errorf("%v", err)
	}
	if err := socketHint(syscall.ENOENT, "/x"); strings.Contains(err.Error(), "hint") {
		t.Errorf("hint on ENOENT: %v", err)
	}
}

// AZOTE_CREDENTIALS_FILE keeps azote's one-file format: the e2e tests and
// older scripts read endpoint and ca_bundle from it.
func TestSaveProfileAzoteFile(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	for _, v := range []string{"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE"} {
		t.Setenv(v, "")
	}
	t.Setenv("AZOTE_CREDENTIALS_FILE", creds)
	ca := filepath.Join(dir, "ca.pem") // the SDK's loader reads it
	os.WriteFile(ca, otherCA(t), 0o600)
	if _, err := saveProfile(profile{Name: "admin", AccessKeyID: "AKIA1", Secret: "s", Endpoint: "https://h:1", CABundle: ca, Region: "local"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(creds)
	if string(got) != "[admin]\naws_access_key_id = AKIA1\naws_secret_access_key = s\nendpoint = https://h:1\nca_bundle = "+ca+"\nregion = local\n" {
		t.Errorf("%q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
		t.Errorf("a config file was written beside AZOTE_CREDENTIALS_FILE")
	}
	p, err := loadProfile(context.Background(), "admin")
	if err != nil || p.Endpoint != "https://h:1" || p.CABundle != ca || p.AccessKeyID != "AKIA1" {
		t.Errorf("%+v %v", p, err)
	}
}
