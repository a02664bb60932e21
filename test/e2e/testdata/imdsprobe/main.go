// Command imdsprobe is the metadata tests' program inside the guest
// (test/e2e/imds_test.go). It prints one line per finding, each starting
// with "imds-test: ", for the test to read on the console.
//
//	imdsprobe check   the IMDSv2 rules, with raw HTTP requests
//	imdsprobe creds   credentials from the SDK's default chain, and
//	                  GetCallerIdentity calls to azoted's API signed with
//	                  them; the user data names the API on its first line
//	                  ("# api https://ADDR:PORT") and holds its CA
//
// It is a static Go program so that the busybox test image can run it.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

const base = "http://169.254.169.254"

func say(format string, args ...any) { fmt.Printf("imds-test: "+format+"\n", args...) }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: imdsprobe check | creds")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "check":
		err = check()
	case "creds":
		err = creds()
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		say("error %v", err)
		os.Exit(1)
	}
}

// do sends one raw request and returns its status and body.
func do(method, path string, hdr map[string]string) (int, string, error) {
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		return 0, "", err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// check prints what the service answers to each IMDSv2 rule.
func check() error {
	// The service may not be ready the instant the guest has its address.
	var code int
	var err error
	for range 30 {
		if code, _, err = do("GET", "/latest/meta-data/instance-id", nil); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return err
	}
	say("no-token %d", code)
	code, _, err = do("PUT", "/latest/api/token", map[string]string{
		"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.9"})
	if err != nil {
		return err
	}
	say("forwarded %d", code)
	code, _, err = do("PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "21601"})
	if err != nil {
		return err
	}
	say("ttl-too-long %d", code)
	code, token, err := do("PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if err != nil {
		return err
	}
	say("token %d", code)
	get := func(path string) (int, string, error) {
		return do("GET", path, map[string]string{"X-aws-ec2-metadata-token": token})
	}
	code, id, err := get("/latest/meta-data/instance-id")
	if err != nil {
		return err
	}
	say("instance-id %d %s", code, id)
	code, _, err = do("GET", "/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": token + "x"})
	if err != nil {
		return err
	}
	say("bad-token %d", code)
	code, _, err = get("/latest/meta-data/no-such-thing")
	if err != nil {
		return err
	}
	say("unknown-path %d", code)
	code, ud, err := get("/latest/user-data")
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(ud))
	say("user-data %d %s", code, hex.EncodeToString(sum[:]))

	// The SDK's own IMDS client: token, then GETs, as SDK users do.
	cl := imds.New(imds.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	doc, err := cl.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		return fmt.Errorf("sdk identity document: %w", err)
	}
	say("sdk-identity %s %s %s", doc.InstanceID, doc.PrivateIP, doc.Region)
	return nil
}

// creds gets credentials as an application does, with nothing
// configured, and calls GetCallerIdentity with them until the credentials
// it gets have been refreshed twice (the test shortens their lifetime).
func creds() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl := imds.New(imds.Options{})
	out, err := cl.GetUserData(ctx, &imds.GetUserDataInput{})
	if err != nil {
		return fmt.Errorf("user data: %w", err)
	}
	ca, err := io.ReadAll(out.Content)
	if err != nil {
		return err
	}
	first, _, _ := strings.Cut(string(ca), "\n")
	url, ok := strings.CutPrefix(first, "# api ")
	if !ok {
		return fmt.Errorf("the user data does not start with \"# api URL\"")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("the user data holds no CA certificate")
	}
	tlsConf := &tls.Config{RootCAs: pool}
	// Each step on its own first, so that a failure says which one.
	host := strings.TrimPrefix(url, "https://")
	conn, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		return fmt.Errorf("dial the API: %w", err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: strings.Split(host, ":")[0]})
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return fmt.Errorf("TLS handshake with the API: %w", err)
	}
	tc.Close()
	say("api reachable %s", host)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	var last string
	for keys := 0; keys < 3; {
		// A new configuration each time: the SDK caches credentials until
		// shortly before they expire, and this loop wants to see them
		// change.
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("local"))
		if err != nil {
			return fmt.Errorf("sdk config: %w", err)
		}
		c, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			return fmt.Errorf("sdk credentials: %w", err)
		}
		if c.AccessKeyID != last {
			keys++
			last = c.AccessKeyID
			say("credentials %s source %s expires-in %ds", c.AccessKeyID, c.Source, int(time.Until(c.Expires).Seconds()))
		}
		arn, err := whoAmI(ctx, hc, url, c)
		if err != nil {
			return err
		}
		say("caller %s %s", c.AccessKeyID, arn)
		time.Sleep(5 * time.Second)
	}
	say("creds done")
	return nil
}

// whoAmI calls azoted's GetCallerIdentity signed with c.
func whoAmI(ctx context.Context, hc *http.Client, url string, c aws.Credentials) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(url, "/")+"/v1/sts/GetCallerIdentity", bytes.NewReader(nil))
	if err != nil {
		return "", err
	}
	empty := sha256.Sum256(nil)
	if err := v4.NewSigner().SignHTTP(ctx, c, req, hex.EncodeToString(empty[:]), "azote", "local", time.Now()); err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GetCallerIdentity: %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var out struct {
		ARN string `json:"arn"`
		Arn string `json:"Arn"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return "", fmt.Errorf("GetCallerIdentity: %w: %s", err, b)
	}
	return out.ARN + out.Arn, nil
}
