// Package client is the Go client of azoted's API: the local unix socket
// (host root, unsigned) or the HTTPS endpoint, every request signed with
// the AWS SDK's SigV4 signer. It holds no credentials store, evaluates no
// policy and never links the server side; the CLI and the tests use it.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/sigv4"
)

// DefaultUserAgent is sent unless the caller sets its own (SetUserAgent).
const DefaultUserAgent = "azote-client"

// Client calls azoted over its unix socket, or over HTTPS with SigV4.
type Client struct {
	http *http.Client
	base string
	// Network clients sign every request.
	creds     *sigv4.Credentials
	region    string
	now       func() time.Time
	signer    *v4.Signer
	userAgent string
}

// SetUserAgent sets the User-Agent header of every request (the CLI sends
// azote-cli/VERSION); it is not signed, as the SDKs leave it out too.
func (c *Client) SetUserAgent(ua string) { c.userAgent = ua }

// NewNetwork returns a client of azoted's HTTPS API at endpoint
// (https://host:port), trusting only the account CA in caPEM, signing
// with creds for region.
func NewNetwork(endpoint string, caPEM []byte, creds sigv4.Credentials, region string) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no CA certificate in the CA bundle")
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q: want https://host:port", endpoint)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		MaxIdleConns:        16,
		MaxIdleConnsPerHost: 16,
		ForceAttemptHTTP2:   false,
	}
	return &Client{http: &http.Client{Transport: tr}, base: strings.TrimRight(endpoint, "/"), creds: &creds, region: region, now: time.Now,
		signer: v4.NewSigner(), userAgent: DefaultUserAgent}, nil
}

// New returns a client of the azoted listening on socket.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 4,
	}
	return &Client{http: &http.Client{Transport: tr}, base: "http://azoted", userAgent: DefaultUserAgent}
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding azoted response: %w", err)
	}
	return nil
}

// send performs a request and turns a non-2xx answer into *api.Error.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach azoted: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, errorOf(resp)
	}
	return resp, nil
}

// errorOf is the *api.Error of a refused request.
func errorOf(resp *http.Response) error {
	var e api.Error
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(data, &e) != nil || e.Code == "" {
		return &api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))}
	}
	return &e
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func (c *Client) HostInfo(ctx context.Context) (api.HostInfo, error) {
	var h api.HostInfo
	return h, c.do(ctx, "GET", "/v1/host", nil, &h)
}

func (c *Client) RunInstance(ctx context.Context, r api.RunInstanceRequest) (api.Instance, error) {
	var i api.Instance
	return i, c.do(ctx, "POST", "/v1/instances", jsonBody(r), &i)
}

func (c *Client) ListInstances(ctx context.Context) ([]api.Instance, error) {
	var l []api.Instance
	return l, c.do(ctx, "GET", "/v1/instances", nil, &l)
}

func (c *Client) DescribeInstance(ctx context.Context, ref string) (api.Instance, error) {
	var i api.Instance
	return i, c.do(ctx, "GET", "/v1/instances/"+url.PathEscape(ref), nil, &i)
}

// WaitInstanceChange long-polls until the instance's revision is not after.
func (c *Client) WaitInstanceChange(ctx context.Context, ref string, after uint64, wait time.Duration) (api.Instance, error) {
	var i api.Instance
	q := url.Values{"after": {strconv.FormatUint(after, 10)}, "wait": {wait.String()}}
	return i, c.do(ctx, "GET", "/v1/instances/"+url.PathEscape(ref)+"?"+q.Encode(), nil, &i)
}

// WaitInstance polls (by long poll) until cond holds or ctx ends.
func (c *Client) WaitInstance(ctx context.Context, ref string, cond func(api.Instance) bool) (api.Instance, error) {
	inst, err := c.DescribeInstance(ctx, ref)
	for err == nil && !cond(inst) {
		select {
		case <-ctx.Done():
			return inst, api.Errorf(api.CodeTimeout, "timed out waiting for instance %s (state %s)", inst.ID, inst.State)
		default:
		}
		next, werr := c.WaitInstanceChange(ctx, inst.ID, inst.Revision, 30*time.Second)
		if werr != nil {
			err = werr // keep the last state seen for the message
			break
		}
		inst = next
	}
	if err != nil && ctx.Err() != nil {
		return inst, api.Errorf(api.CodeTimeout, "timed out waiting for instance %s (state %s)", inst.ID, inst.State)
	}
	return inst, err
}

func (c *Client) ModifyInstance(ctx context.Context, ref string, r api.ModifyInstanceRequest) (api.Instance, error) {
	var i api.Instance
	return i, c.do(ctx, "PATCH", "/v1/instances/"+url.PathEscape(ref), jsonBody(r), &i)
}

func (c *Client) InstanceAction(ctx context.Context, ref, action string, body any) (api.Instance, error) {
	var i api.Instance
	var rd io.Reader
	if body != nil {
		rd = jsonBody(body)
	}
	return i, c.do(ctx, "POST", "/v1/instances/"+url.PathEscape(ref)+"/"+action, rd, &i)
}

// Console copies the console to w; with follow it streams until ctx ends.
func (c *Client) Console(ctx context.Context, ref string, tail int64, follow bool, w io.Writer) error {
	q := url.Values{"tail": {strconv.FormatInt(tail, 10)}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.send(ctx, "GET", "/v1/instances/"+url.PathEscape(ref)+"/console?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *Client) PutBlob(ctx context.Context, sha384 string, data []byte) error {
	return c.do(ctx, "PUT", "/v1/blobs/"+sha384, bytes.NewReader(data), nil)
}

func (c *Client) CreateImage(ctx context.Context, r api.CreateImageRequest) (api.CreateImageResponse, error) {
	var out api.CreateImageResponse
	return out, c.do(ctx, "POST", "/v1/images", jsonBody(r), &out)
}

func (c *Client) ListImages(ctx context.Context) ([]api.Image, error) {
	var l []api.Image
	return l, c.do(ctx, "GET", "/v1/images", nil, &l)
}

func (c *Client) DescribeImage(ctx context.Context, ref string) (api.Image, error) {
	var i api.Image
	return i, c.do(ctx, "GET", "/v1/images/"+url.PathEscape(ref), nil, &i)
}

func (c *Client) DeleteImage(ctx context.Context, ref string) error {
	return c.do(ctx, "DELETE", "/v1/images/"+url.PathEscape(ref), nil, nil)
}

// newRequest builds a request; a network client signs it. Blob uploads
// and volume imports are sent UNSIGNED-PAYLOAD (the server verifies a
// blob's SHA-384, the fill card an import's SHA-256), every
// other body is covered by the signature. A fresh amz-sdk-invocation-id
// makes two identical calls in one second two different requests, as
// the AWS SDKs do, so the server's replay check never refuses a retry.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	var data []byte
	blob := strings.HasPrefix(path, "/v1/blobs/") || strings.HasPrefix(path, api.VolumeImportPath+"?")
	if body != nil && c.creds != nil && !blob {
		var err error
		if data, err = io.ReadAll(body); err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if sb, ok := body.(sizedBody); ok {
		req.ContentLength = sb.n
	}
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		ct := "application/json"
		if blob {
			ct = "application/octet-stream"
		}
		req.Header.Set("Content-Type", ct)
	}
	if c.creds != nil {
		req.Header.Set("Amz-Sdk-Invocation-Id", invocationID())
		payload := sigv4.HashPayload(data)
		if blob && body != nil {
			payload = sigv4.UnsignedPayload
			req.Header.Set("X-Amz-Content-Sha256", payload)
		}
		creds := aws.Credentials{AccessKeyID: c.creds.AccessKeyID, SecretAccessKey: c.creds.SecretAccessKey, SessionToken: c.creds.SessionToken}
		if err := c.signer.SignHTTP(ctx, creds, req, payload, api.Service, c.region, c.now()); err != nil {
			return nil, err
		}
	}
	return req, nil
}

func invocationID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Call invokes an action-style operation (service:Action) with a JSON
// request and decodes the JSON answer into out.
func (c *Client) Call(ctx context.Context, op string, req, out any) error {
	service, action, ok := strings.Cut(op, ":")
	if !ok {
		return fmt.Errorf("operation %q: want service:Action", op)
	}
	var body io.Reader
	if req != nil {
		body = jsonBody(req)
	}
	return c.do(ctx, "POST", "/v1/"+service+"/"+action, body, out)
}

// Raw sends an arbitrary request; tests use it for malformed input.
func (c *Client) Raw(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := c.newRequest(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func (c *Client) CreateVolume(ctx context.Context, r api.CreateVolumeRequest) (api.Volume, error) {
	var v api.Volume
	return v, c.do(ctx, "POST", "/v1/volumes", jsonBody(r), &v)
}

func (c *Client) ListVolumes(ctx context.Context) ([]api.Volume, error) {
	var l []api.Volume
	return l, c.do(ctx, "GET", "/v1/volumes", nil, &l)
}

func (c *Client) DescribeVolume(ctx context.Context, ref string) (api.Volume, error) {
	var v api.Volume
	return v, c.do(ctx, "GET", "/v1/volumes/"+url.PathEscape(ref), nil, &v)
}

func (c *Client) ModifyVolume(ctx context.Context, ref string, r api.ModifyVolumeRequest) (api.Volume, error) {
	var v api.Volume
	return v, c.do(ctx, "PATCH", "/v1/volumes/"+url.PathEscape(ref), jsonBody(r), &v)
}

func (c *Client) DeleteVolume(ctx context.Context, ref string, now bool) (api.Volume, error) {
	var v api.Volume
	q := ""
	if now {
		q = "?now=1"
	}
	return v, c.do(ctx, "DELETE", "/v1/volumes/"+url.PathEscape(ref)+q, nil, &v)
}

func (c *Client) VolumeAction(ctx context.Context, ref, action string, body any) (api.Volume, error) {
	var v api.Volume
	var rd io.Reader
	if body != nil {
		rd = jsonBody(body)
	}
	return v, c.do(ctx, "POST", "/v1/volumes/"+url.PathEscape(ref)+"/"+action, rd, &v)
}

// Metrics returns the Prometheus text of azoted's metrics endpoint.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.send(ctx, "GET", "/metrics", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// AuditFile fetches one finished file of the audit trail.
func (c *Client) AuditFile(ctx context.Context, rel string) ([]byte, error) {
	resp, err := c.send(ctx, "GET", "/v1/audit/files/"+rel, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<30))
}
