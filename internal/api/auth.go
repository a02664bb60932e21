package api

import (
	"context"
	"time"
)

// Principal types, as CloudTrail's userIdentity.type names them.
const (
	PrincipalRoot        = "Root"
	PrincipalUser        = "IAMUser"
	PrincipalAssumedRole = "AssumedRole"
	// PrincipalHostRoot is uid 0 on the host itself, calling over the
	// root-only unix socket. Whoever is root on the host already holds
	// the host key; the socket exists for bootstrap and break-glass, and
	// every call through it is authorised and audited like any other.
	PrincipalHostRoot = "HostRoot"
)

// Caller is the authenticated principal of one request.
type Caller struct {
	Type        string
	ARN         string
	PrincipalID string
	AccountID   string
	// UserName is the IAM user name, or the role session name.
	UserName    string
	AccessKeyID string
	// Session is set for temporary credentials (STS).
	Session        bool
	SessionCreated time.Time
	SessionExpiry  time.Time
	// MFA tells whether the session was made with an MFA code, and when.
	MFA         bool
	MFAAuthTime time.Time
	// Issuer is the role (or user) a session was issued for.
	IssuerARN  string
	IssuerType string
	IssuerName string
	// SourceInstance is the id of the instance whose role credentials
	// signed the request (instance roles; empty for any other caller).
	SourceInstance string

	SourceIP  string
	UserAgent string
	Secure    bool // arrived over TLS
}

// Operation is one authorised API action: the unit that IAM policies
// name, CloudTrail records and the gateway dispatches. Every route, REST
// or action-style, is one Operation (the gateway's tests walk its route
// table to hold this true); nothing reaches a backend without being
// authorised as one.
type Operation struct {
	// Name is service:Action, e.g. iam:CreateUser.
	Name string
	// ReadOnly marks actions that change nothing (CloudTrail readOnly).
	ReadOnly bool
	// NewRequest returns a pointer to the request type; nil means the
	// action takes no body.
	NewRequest func() any
	// Resource is the ARN the request acts on ("*" when none).
	Resource func(ctx context.Context, req any) (string, error)
	// Conditions, when set, gives the request's own condition keys
	// (lower-cased), e.g. iam:PolicyARN of an attach.
	Conditions func(ctx context.Context, req any) map[string][]string
	// Also names further resources the call acts on (nil for most): the
	// caller must be allowed the action on each of them too, as AWS
	// evaluates a call against every resource it involves, and each
	// joins the call's audit record.
	Also func(ctx context.Context, req any) ([]string, error)
	// AlsoAction is the action the Also resources are authorised for
	// (a launch attaches its volumes: compute:AttachVolume on each);
	// Name when empty.
	AlsoAction string
	// AlsoActionOf, when set, names the action one Also resource (by its
	// ARN) is authorised for, where a call involves resources of several
	// kinds (a launch attaches volumes and takes a subnet); an empty
	// answer falls back to AlsoAction.
	AlsoActionOf func(arn string) string
	// Do performs the action for an authorised caller.
	Do func(ctx context.Context, c *Caller, req any) (any, error)
	// NetworkDenied refuses the action over the network API: it may only
	// be called over the root-only unix socket (account bootstrap).
	NetworkDenied bool
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller of a request's context, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// Service is the SigV4 service name of the controller API.
const Service = "azote"

// MaxWait bounds a long poll (GET /v1/instances/{ref}?wait=).
const MaxWait = 5 * time.Minute
