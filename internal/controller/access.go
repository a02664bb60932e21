package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/sigv4"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/iam"
	"github.com/azote/azote/internal/keys"
)

// authAdapter presents the IAM to the API.
type authAdapter struct{ iam *iam.Service }

func (a authAdapter) Credentials(akid, token string) (string, bool, *api.Caller, error) {
	secret, active, c, err := a.iam.Credentials(akid, token)
	switch {
	case errors.Is(err, iam.ErrUnknownKey):
		return "", false, nil, sigv4.ErrUnknownKey
	case errors.Is(err, iam.ErrExpiredToken):
		return "", false, nil, sigv4.ErrExpiredToken
	}
	return secret, active, c, err
}

func (a authAdapter) HostRoot(pid int32) *api.Caller { return a.iam.HostRoot(pid) }

func (a authAdapter) Authorize(c *api.Caller, action, resource string, extra map[string][]string) (bool, string) {
	d := a.iam.Authorize(c, action, resource, extra, nil)
	return d.Allowed, d.Reason
}

func (a authAdapter) AccountID() string { return a.iam.AccountID() }

// openAccess opens the IAM, the audit trail and the TLS material.
func (c *Controller) openAccess(wrapper keys.Wrapper) error {
	svc, err := iam.Open(c.store, wrapper, c.cfg.Region, nil)
	if err != nil {
		return err
	}
	c.iam = svc
	key, err := loadOrMakeRSA(filepath.Join(c.cfg.StateDir, "audit-signing.key"))
	if err != nil {
		return fmt.Errorf("audit signing key: %w", err)
	}
	// The trail's public-keys/ is as writable as its digests: the keys
	// azoted validates with are pinned outside it.
	if _, err := audit.PinnedKeys(c.auditKeysDir(), &key.PublicKey); err != nil {
		return fmt.Errorf("pinning the audit signing key: %w", err)
	}
	trail, err := audit.Open(audit.Config{
		Dir: c.auditDir(), AccountID: svc.AccountID(), Region: c.cfg.Region, Signer: key,
		MaxFileAge: c.cfg.AuditFileAge, DigestEvery: c.cfg.AuditDigestEvery,
		// The signed journal head lives with the state, not in the trail:
		// whoever can write the trail cannot delete it to pass for a trail
		// from before heads.
		HeadFile: filepath.Join(c.cfg.StateDir, "audit-journal.head"),
	})
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	if n := trail.Stats().Tampered; n > 0 {
		c.log.Error("audit journals did not match their signed head after a crash; kept aside unsigned (audit validate reports them)", "journals", n, "dir", filepath.Join(c.auditDir(), "active"))
	}
	c.trail = trail
	return nil
}

func (c *Controller) auditDir() string { return filepath.Join(c.cfg.StateDir, "audit") }

// auditKeysDir holds the keys azoted's own validation trusts: every key it
// has signed digests with, and retired keys an operator places there.
func (c *Controller) auditKeysDir() string { return filepath.Join(c.cfg.StateDir, "audit-keys") }

// validateTrail validates the trail with the pinned keys only; a digest
// signed by any other key is reported, whatever public-keys/ holds.
func (c *Controller) validateTrail(from, to time.Time) (audit.Report, error) {
	keys, err := audit.PinnedKeys(c.auditKeysDir(), nil)
	if err != nil {
		return audit.Report{}, err
	}
	return audit.Validate(c.auditDir(), keys, from, to)
}

// tlsNames are the names the host certificate is valid for.
func (c *Controller) tlsNames() []string {
	names := []string{c.cfg.HostName, "localhost", "127.0.0.1", "::1"}
	return append(names, c.cfg.TLSNames...)
}

// event records a security decision azoted made on its own (a launch, a
// key handed to a card, a crypto-erase) as a service event.
func (c *Controller) event(name, resource string, data map[string]any) {
	arn := ""
	if resource != "" {
		arn = api.MakeARN("compute", c.iam.AccountID(), resource)
	}
	c.serviceEvent("compute.azote", name, arn, data)
}

// serviceEvent records an event of one of azoted's services on the
// resource arn ("" for none).
func (c *Controller) serviceEvent(source, name, arn string, data map[string]any) {
	if c.trail == nil {
		return
	}
	rec := &audit.Record{
		EventTime: time.Now(), EventSource: source, EventName: name, AWSRegion: c.cfg.Region,
		SourceIPAddress: "azoted", UserAgent: "azoted/" + Version,
		UserIdentity:        audit.UserIdentity{Type: "AzoteService", InvokedBy: "azoted"},
		AdditionalEventData: data, RequestID: "", EventType: "AwsServiceEvent", ManagementEvent: true,
	}
	if arn != "" {
		rec.Resources = []audit.Resource{{ARN: arn, AccountID: c.iam.AccountID()}}
	}
	if err := c.trail.Append(context.Background(), rec); err != nil {
		c.log.Error("audit append failed", "event", name, "err", err)
	}
}

// Operations returns every action-style operation azoted serves.
func (c *Controller) Operations() []*api.Operation {
	ops := c.iam.Operations()
	trailARN := func(context.Context, any) (string, error) {
		return api.MakeARN("audit", c.iam.AccountID(), "trail/default"), nil
	}
	ops = append(ops,
		&api.Operation{Name: "iam:InitAccountBegin", NetworkDenied: true,
			Resource: func(context.Context, any) (string, error) { return c.iam.RootARN(), nil },
			Do: func(context.Context, *api.Caller, any) (any, error) {
				d, err := c.iam.BeginInit()
				if err != nil {
					return nil, err
				}
				a, _ := c.iam.Account()
				return map[string]any{"AccountId": a.ID, "Device": d}, nil
			}},
		&api.Operation{Name: "iam:InitAccount", NetworkDenied: true, NewRequest: func() any { return new(api.InitRequest) },
			Resource: func(context.Context, any) (string, error) { return c.iam.RootARN(), nil },
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				resp, err := c.iam.Init(*r.(*api.InitRequest))
				if err != nil {
					return nil, err
				}
				ca, err := os.ReadFile(filepath.Join(c.cfg.StateDir, "tls", caCertFile))
				if err != nil {
					return nil, err
				}
				return map[string]any{"Account": resp, "CACertificate": string(ca), "Endpoint": c.endpoint(), "Region": c.cfg.Region}, nil
			}},
		&api.Operation{Name: "audit:LookupEvents", ReadOnly: true, NewRequest: func() any { return new(api.LookupEventsRequest) }, Resource: trailARN,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				q := r.(*api.LookupEventsRequest)
				limit := q.Limit
				if limit <= 0 || limit > 10000 {
					limit = 1000
				}
				recs, err := c.trail.Lookup(audit.Filter{Principal: q.Principal, EventName: q.EventName, Resource: q.Resource,
					ErrorCode: q.ErrorCode, OnlyErrors: q.OnlyErrors, Start: q.StartTime, End: q.EndTime, Limit: limit})
				if err != nil {
					return nil, err
				}
				if recs == nil {
					recs = []audit.Record{}
				}
				return map[string]any{"Events": recs}, nil
			}},
		&api.Operation{Name: "audit:ListLogFiles", ReadOnly: true, NewRequest: func() any { return new(api.ListLogFilesRequest) }, Resource: trailARN,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				files, err := audit.ListFiles(c.auditDir(), r.(*api.ListLogFilesRequest).After)
				if files == nil {
					files = []string{}
				}
				return map[string]any{"Files": files}, err
			}},
		&api.Operation{Name: "audit:ValidateLogs", ReadOnly: true, NewRequest: func() any { return new(api.ValidateLogsRequest) }, Resource: trailARN,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				q := r.(*api.ValidateLogsRequest)
				if q.Rotate {
					if err := c.trail.WriteDigest(); err != nil {
						return nil, err
					}
				}
				return c.validateTrail(q.StartTime, q.EndTime)
			}},
		&api.Operation{Name: "audit:GetTrailInfo", ReadOnly: true, Resource: trailARN,
			Do: func(context.Context, *api.Caller, any) (any, error) {
				st := c.trail.Stats()
				return map[string]any{"PublicKey": string(c.trail.PublicKeyPEM()), "Fingerprint": c.trail.Fingerprint(), "Stats": st}, nil
			}},
	)
	return ops
}

func (c *Controller) endpoint() string {
	if c.cfg.Listen == "" {
		return ""
	}
	return "https://" + c.cfg.ListenAddr()
}

// auditFile serves one finished trail file to a collector.
func (c *Controller) auditFile(ctx context.Context, rel string) ([]byte, error) {
	data, err := audit.DirSource(c.auditDir()).Fetch(ctx, rel)
	if err != nil {
		return nil, api.Errorf(api.CodeNotFound, "audit file %q: not a trail file", rel)
	}
	return data, nil
}
