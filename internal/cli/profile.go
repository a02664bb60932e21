package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/sigv4"
)

// profile is one section of the credentials file, in the AWS shared
// credentials format plus azote's endpoint and CA bundle:
//
//	[admin]
//	aws_access_key_id = AKIA...
//	aws_secret_access_key = ...
//	endpoint = https://host:8443
//	ca_bundle = /root/.azote/ca-123456789012.pem
//	region = local
type profile struct {
	Name         string
	AccessKeyID  string
	Secret       string
	SessionToken string
	Endpoint     string
	CABundle     string
	Region       string
}

func credentialsFile() string {
	if f := os.Getenv("AZOTE_CREDENTIALS_FILE"); f != "" {
		return f
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".azote", "credentials")
}

// readProfiles parses the credentials file.
func readProfiles(path string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cur map[string]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && strings.HasSuffix(line, "]"):
			name := strings.TrimSpace(line[1 : len(line)-1])
			cur = map[string]string{}
			out[name] = cur
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || cur == nil {
				return nil, fmt.Errorf("%s:%d: want key = value inside a [profile]", path, n)
			}
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out, sc.Err()
}

func loadProfile(name string) (profile, error) {
	if name == "" {
		name = "default"
	}
	path := credentialsFile()
	all, err := readProfiles(path)
	if err != nil {
		return profile{}, err
	}
	m, ok := all[name]
	if !ok {
		return profile{}, fmt.Errorf("profile %q not found in %s", name, path)
	}
	p := profile{Name: name, AccessKeyID: m["aws_access_key_id"], Secret: m["aws_secret_access_key"], SessionToken: m["aws_session_token"],
		Endpoint: m["endpoint"], CABundle: m["ca_bundle"], Region: m["region"]}
	if p.AccessKeyID == "" || p.Secret == "" {
		return profile{}, fmt.Errorf("profile %q in %s has no aws_access_key_id/aws_secret_access_key", name, path)
	}
	if p.Region == "" {
		p.Region = "local"
	}
	return p, nil
}

func (p profile) client() (*api.Client, error) {
	if p.Endpoint == "" {
		return nil, fmt.Errorf("profile %q has no endpoint (set endpoint = https://host:port or --endpoint)", p.Name)
	}
	if p.CABundle == "" {
		return nil, fmt.Errorf("profile %q has no ca_bundle (the account CA certificate azote init wrote)", p.Name)
	}
	ca, err := os.ReadFile(p.CABundle)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.Name, err)
	}
	return api.NewNetworkClient(p.Endpoint, ca, sigv4.Credentials{AccessKeyID: p.AccessKeyID, SecretAccessKey: p.Secret, SessionToken: p.SessionToken}, p.Region)
}

// saveProfile writes (or replaces) a profile, keeping the others; the
// file is the owner's only (0600), written atomically.
func saveProfile(p profile) (string, error) {
	path := credentialsFile()
	all, err := readProfiles(path)
	if err != nil {
		return "", err
	}
	m := map[string]string{"aws_access_key_id": p.AccessKeyID, "aws_secret_access_key": p.Secret, "endpoint": p.Endpoint, "ca_bundle": p.CABundle, "region": p.Region}
	if p.SessionToken != "" {
		m["aws_session_token"] = p.SessionToken
	}
	all[p.Name] = m
	var b strings.Builder
	var names []string
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "[%s]\n", n)
		var keys []string
		for k := range all[n] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if all[n][k] != "" {
				fmt.Fprintf(&b, "%s = %s\n", k, all[n][k])
			}
		}
		b.WriteString("\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
