package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// IMDSEndpoint is the metadata service's address, answered by the net
// card (the request never leaves the host).
const IMDSEndpoint = "http://169.254.169.254"

// maxIMDSBody bounds what the agent reads of one answer: user data is at
// most 16 KiB (as EC2), every other value far smaller.
const maxIMDSBody = 64 << 10

// ErrIMDSNotFound is a path the metadata service does not have (404): no
// user data, no key pair.
var ErrIMDSNotFound = errors.New("imds: not found")

// IMDS is an IMDSv2 client: it asks for a session token with PUT
// /latest/api/token and sends it with every GET. It never follows a
// redirect, never goes through a proxy and reads bounded answers.
type IMDS struct {
	// Endpoint is scheme://host of the service (IMDSEndpoint in a guest).
	Endpoint string
	// TokenTTL is the lifetime asked for each token (1..21600 s).
	TokenTTL time.Duration
	HTTP     *http.Client

	token   string
	expires time.Time
}

// NewIMDS returns a client of endpoint whose every request (token
// included) gives up after timeout.
func NewIMDS(endpoint string, timeout time.Duration) *IMDS {
	return &IMDS{
		Endpoint: endpoint,
		TokenTTL: 6 * time.Hour,
		HTTP: &http.Client{
			Timeout: timeout,
			// The metadata service is on the link: no proxy from the
			// environment, no redirect anywhere else.
			Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Token returns a session token, asking for a new one when the last is
// within a minute of its end.
func (c *IMDS) Token(ctx context.Context) (string, error) {
	if c.token != "" && time.Until(c.expires) > time.Minute {
		return c.token, nil
	}
	ttl := int(c.TokenTTL / time.Second)
	if ttl < 1 || ttl > 21600 {
		return "", fmt.Errorf("imds: token lifetime %v outside 1 s..6 h", c.TokenTTL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.Endpoint+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
	body, err := c.do(req)
	if err != nil {
		return "", fmt.Errorf("imds: token: %w", err)
	}
	tok := strings.TrimSpace(string(body))
	if tok == "" || strings.ContainsAny(tok, "\r\n") {
		return "", errors.New("imds: token: empty or malformed answer")
	}
	c.token, c.expires = tok, time.Now().Add(time.Duration(ttl)*time.Second)
	return tok, nil
}

// Get returns the value at path under /latest/ ("meta-data/hostname",
// "user-data"). A 404 gives ErrIMDSNotFound.
func (c *IMDS) Get(ctx context.Context, path string) ([]byte, error) {
	tok, err := c.Token(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint+"/latest/"+strings.TrimPrefix(path, "/"), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-aws-ec2-metadata-token", tok)
	body, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("imds: %s: %w", path, err)
	}
	return body, nil
}

func (c *IMDS) do(req *http.Request) ([]byte, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIMDSBody+1))
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, ErrIMDSNotFound
	case resp.StatusCode == http.StatusUnauthorized:
		// A token that expired or that the service forgot (the card
		// restarted): the next call asks for a new one.
		c.token = ""
		return nil, fmt.Errorf("status %s", resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("status %s", resp.Status)
	case len(body) > maxIMDSBody:
		return nil, fmt.Errorf("answer over %d bytes", maxIMDSBody)
	}
	return body, nil
}
