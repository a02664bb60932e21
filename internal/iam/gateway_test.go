package iam

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http/httptest"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/api/sigv4"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/gateway"
)

// gatewayAuth presents the IAM to the API, as azoted's adapter does.
type gatewayAuth struct{ s *Service }

func (a gatewayAuth) Credentials(akid, token string) (string, bool, *api.Caller, error) {
	secret, active, c, err := a.s.Credentials(akid, token)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return "", false, nil, sigv4.ErrUnknownKey
	case errors.Is(err, ErrExpiredToken):
		return "", false, nil, sigv4.ErrExpiredToken
	}
	return secret, active, c, err
}
func (a gatewayAuth) HostRoot(pid int32) *api.Caller { return a.s.HostRoot(pid) }
func (a gatewayAuth) Authorize(c *api.Caller, action, resource string, extra map[string][]string) (bool, string) {
	d := a.s.Authorize(c, action, resource, extra, nil)
	return d.Allowed, d.Reason
}
func (a gatewayAuth) AccountID() string { return a.s.AccountID() }

// trail keeps the audit records of a gateway.
type trail struct{ recs []audit.Record }

func (t *trail) Append(_ context.Context, r *audit.Record) error {
	t.recs = append(t.recs, *r)
	return nil
}

// served is the IAM served by the real API handler over TLS, every
// request SigV4-signed: a test calls it as a client of azoted does, so
// what it checks is the resource each operation is authorised on
// together with what the operation then does.
type served struct {
	e     *env
	url   string
	ca    []byte
	trail *trail
}

func (e *env) gateway() *served {
	e.t.Helper()
	tr := &trail{}
	h := gateway.NewHandler(gateway.Config{Operations: e.svc.Operations(), Auth: gatewayAuth{e.svc}, Audit: tr, Region: "local", Network: true})
	srv := httptest.NewTLSServer(h)
	e.t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return &served{e: e, url: srv.URL, ca: ca, trail: tr}
}

// call signs op with the credentials and returns the operation's error.
func (g *served) call(creds sigv4.Credentials, op string, req, out any) error {
	g.e.t.Helper()
	c, err := client.NewNetwork(g.url, g.ca, creds, "local")
	if err != nil {
		g.e.t.Fatal(err)
	}
	return c.Call(context.Background(), op, req, out)
}

func keyCreds(k api.NewAccessKey) sigv4.Credentials {
	return sigv4.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey}
}

func sessionCreds(c api.Credentials) sigv4.Credentials {
	return sigv4.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
}
