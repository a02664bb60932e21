package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/api/sigv4"
)

// A profile lives in the AWS shared files, as the aws CLI keeps it, so
// that one profile serves both:
//
//	~/.aws/credentials            ~/.aws/config
//	[admin]                       [profile admin]
//	aws_access_key_id = AKIA...   endpoint_url = https://host:8443
//	aws_secret_access_key = ...   ca_bundle = /root/.aws/ca-123456789012.pem
//	                              region = local
//
// It is read with the AWS SDK's shared-config loader, which also takes
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE,
// AWS_REGION (or AWS_DEFAULT_REGION), AWS_ENDPOINT_URL and AWS_CA_BUNDLE
// from the environment. As for aws, the command line (--endpoint,
// --region) wins over the environment, and the environment over the
// profile.
type profile struct {
	Name         string
	AccessKeyID  string
	Secret       string
	SessionToken string
	Endpoint     string
	CABundle     string
	Region       string
	// ProfileCABundle is the profile's own ca_bundle when AWS_CA_BUNDLE
	// overrode it.
	ProfileCABundle string
}

// credentialsFile is the shared credentials file: AZOTE_CREDENTIALS_FILE
// (kept from before azote used the AWS files), AWS_SHARED_CREDENTIALS_FILE,
// or ~/.aws/credentials.
func credentialsFile() string {
	if f := os.Getenv("AZOTE_CREDENTIALS_FILE"); f != "" {
		return f
	}
	if f := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
		return f
	}
	return filepath.Join(homeDir(), ".aws", "credentials")
}

// configFile is the shared config file: AWS_CONFIG_FILE, the file named
// config beside AZOTE_CREDENTIALS_FILE (read if it is there; azote writes
// whole profiles into AZOTE_CREDENTIALS_FILE), or ~/.aws/config.
func configFile() string {
	if f := os.Getenv("AWS_CONFIG_FILE"); f != "" {
		return f
	}
	if f := os.Getenv("AZOTE_CREDENTIALS_FILE"); f != "" {
		return filepath.Join(filepath.Dir(f), "config")
	}
	return filepath.Join(homeDir(), ".aws", "config")
}

func homeDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return "/root"
	}
	return home
}

// networkWanted reports whether the command line or the environment
// chose the signed HTTPS API over the local socket.
func (e *env) networkWanted() bool {
	if e.profile != "" || e.endpoint != "" {
		return true
	}
	for _, v := range []string{"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL"} {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// connect makes e.client: the local socket, or the HTTPS API signed with
// the resolved profile.
func (e *env) connect(ctx context.Context) error {
	if !e.networkWanted() {
		e.local = true
		e.client = client.New(e.socket)
		e.client.SetUserAgent(userAgent())
		return nil
	}
	p, err := loadProfile(ctx, e.profile)
	if err != nil {
		return err
	}
	if e.endpoint != "" {
		p.Endpoint = e.endpoint
	}
	if e.region != "" {
		p.Region = e.region
	}
	if p.ProfileCABundle != "" {
		e.caHint = fmt.Sprintf("AWS_CA_BUNDLE (%s) overrides the profile's ca_bundle (%s), as it does for aws; unset it for azote (AWS_CA_BUNDLE= azote ...)", p.CABundle, p.ProfileCABundle)
	}
	if e.client, err = p.client(); err != nil {
		return err
	}
	e.client.SetUserAgent(userAgent())
	return nil
}

// loadProfile resolves credentials, endpoint, CA bundle and region with
// the SDK's loader: environment first, then the named profile (or
// AWS_PROFILE, or default) of the config and credentials files.
func loadProfile(ctx context.Context, name string) (profile, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithSharedCredentialsFiles([]string{credentialsFile()}),
		config.WithSharedConfigFiles([]string{configFile()}),
		// azoted is no EC2 host: never wait on its metadata service.
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
	}
	if name != "" {
		opts = append(opts, config.WithSharedConfigProfile(name))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		var nf config.SharedConfigProfileNotExistError
		if errors.As(err, &nf) {
			return profile{}, fmt.Errorf("profile %q not found in %s or %s", nf.Profile, credentialsFile(), configFile())
		}
		return profile{}, err
	}
	p := profile{Name: name, Region: cfg.Region}
	if p.Name == "" {
		p.Name = envOr("AWS_PROFILE", "default")
	}
	if cfg.BaseEndpoint != nil {
		p.Endpoint = *cfg.BaseEndpoint
	}
	// AWS_CA_BUNDLE wins over the profile's ca_bundle, as it does for
	// the SDK's own clients and the aws CLI (the SDK resolved the region
	// and endpoint in that order too). The loader gives the bundle to
	// the SDK's HTTP client, which azote does not use, so the path is
	// taken from the sources it lists.
	var envCA, profileCA string
	for _, src := range cfg.ConfigSources {
		switch s := src.(type) {
		case config.EnvConfig:
			envCA = s.CustomCABundle
		case config.SharedConfig:
			profileCA = s.CustomCABundle
		}
	}
	p.CABundle = profileCA
	if envCA != "" {
		p.CABundle = envCA
		if profileCA != envCA {
			p.ProfileCABundle = profileCA
		}
	}
	if p.Endpoint == "" {
		// azote's files before it used the AWS ones said endpoint.
		p.Endpoint = legacyEndpoint(credentialsFile(), p.Name)
	}
	if cfg.Credentials == nil {
		return profile{}, fmt.Errorf("profile %q has no credentials (aws_access_key_id, aws_secret_access_key)", p.Name)
	}
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return profile{}, fmt.Errorf("profile %q: no usable credentials in %s or the environment: %w", p.Name, credentialsFile(), err)
	}
	p.AccessKeyID, p.Secret, p.SessionToken = c.AccessKeyID, c.SecretAccessKey, c.SessionToken
	if p.Region == "" {
		p.Region = "local"
	}
	return p, nil
}

// legacyEndpoint reads "endpoint" from section name of an azote
// credentials file written before azote used the AWS files.
func legacyEndpoint(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			in = strings.TrimSpace(line[1:len(line)-1]) == name
			continue
		}
		if k, v, ok := strings.Cut(line, "="); in && ok && strings.TrimSpace(k) == "endpoint" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (p profile) client() (*client.Client, error) {
	if p.Endpoint == "" {
		return nil, fmt.Errorf("profile %q has no endpoint_url (set it in %s, or give --endpoint or AWS_ENDPOINT_URL)", p.Name, configFile())
	}
	if p.CABundle == "" {
		return nil, fmt.Errorf("profile %q has no ca_bundle (the account CA certificate azote init wrote; or AWS_CA_BUNDLE)", p.Name)
	}
	ca, err := os.ReadFile(p.CABundle)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.Name, err)
	}
	return client.NewNetwork(p.Endpoint, ca, sigv4.Credentials{AccessKeyID: p.AccessKeyID, SecretAccessKey: p.Secret, SessionToken: p.SessionToken}, p.Region)
}

// saveProfile writes (or updates) a profile: its keys into the
// credentials file, its endpoint_url, ca_bundle and region into the config
// file (with AZOTE_CREDENTIALS_FILE, all of it into that file, as azote
// wrote profiles before it used the AWS files). Every other line of both files (comments, other profiles, keys
// azote does not know) is kept as it was; the files are the owner's only
// (0600), written atomically. It returns the credentials file's path.
func saveProfile(p profile) (string, error) {
	creds := [][2]string{
		{"aws_access_key_id", p.AccessKeyID},
		{"aws_secret_access_key", p.Secret},
		{"aws_session_token", p.SessionToken},
	}
	cpath := credentialsFile()
	if os.Getenv("AZOTE_CREDENTIALS_FILE") != "" {
		// azote's own file keeps its format: one section holding the
		// keys, endpoint, ca_bundle and region.
		all := append(creds, [2]string{"endpoint", p.Endpoint}, [2]string{"ca_bundle", p.CABundle}, [2]string{"region", p.Region})
		return cpath, editINI(cpath, p.Name, all)
	}
	if err := editINI(cpath, p.Name, creds); err != nil {
		return "", err
	}
	section := "profile " + p.Name
	if p.Name == "default" {
		section = "default"
	}
	conf := [][2]string{{"endpoint_url", p.Endpoint}, {"ca_bundle", p.CABundle}, {"region", p.Region}}
	if err := editINI(configFile(), section, conf); err != nil {
		return "", err
	}
	return cpath, nil
}

// editINI sets keys of one section of an INI file in place: a key that
// is there gets its new value on its own line, a missing one is added at
// the end of the section, an empty value removes the key; a missing
// section is appended. Nothing else in the file changes.
func editINI(path, section string, keys [][2]string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lines := strings.SplitAfter(string(old), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	want := map[string]string{}
	for _, kv := range keys {
		want[kv[0]] = kv[1]
	}
	done := map[string]bool{}
	var out []string
	in, found := false, false
	// lastKey is where missing keys go: after the section's last
	// non-blank line, so a blank line between sections stays.
	lastKey := -1
	flush := func() {
		if !in {
			return
		}
		var add []string
		for _, kv := range keys {
			if !done[kv[0]] && kv[1] != "" {
				add = append(add, kv[0]+" = "+kv[1]+"\n")
				done[kv[0]] = true
			}
		}
		if len(add) > 0 {
			if lastKey >= 0 && !strings.HasSuffix(out[lastKey], "\n") {
				out[lastKey] += "\n"
			}
			at := lastKey + 1
			out = append(out[:at], append(add, out[at:]...)...)
		}
		in = false
	}
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			flush()
			if strings.TrimSpace(t[1:len(t)-1]) == section {
				in, found = true, true
			}
			out = append(out, l)
			lastKey = len(out) - 1
			continue
		}
		if in && t != "" && t[0] != '#' && t[0] != ';' {
			k, _, ok := strings.Cut(t, "=")
			k = strings.TrimSpace(k)
			if v, mine := want[k]; ok && mine {
				if done[k] || v == "" {
					continue // a duplicate, or a key to remove
				}
				done[k] = true
				out = append(out, k+" = "+v+"\n")
				lastKey = len(out) - 1
				continue
			}
		}
		out = append(out, l)
		if in && t != "" {
			lastKey = len(out) - 1
		}
	}
	flush()
	if !found {
		if n := len(out); n > 0 {
			if !strings.HasSuffix(out[n-1], "\n") {
				out[n-1] += "\n"
			}
			if strings.TrimSpace(out[n-1]) != "" {
				out = append(out, "\n")
			}
		}
		out = append(out, "["+section+"]\n")
		for _, kv := range keys {
			if kv[1] != "" {
				out = append(out, kv[0]+" = "+kv[1]+"\n")
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(out, "")), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// socketHint explains a refused local socket: it is root's, so a user
// either runs as root or uses a profile.
func socketHint(err error, socket string) error {
	if !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EPERM) {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w\nhint: %s is root's; run azote as root (sudo azote ...), or use the HTTPS API with a profile (--profile NAME or AWS_PROFILE; see azote init)", err, socket)
	}
	return fmt.Errorf("%w\nhint: %s refused root; check its mode, or use a profile (--profile NAME)", err, socket)
}
