package policy

import (
	"strings"
	"time"
)

// Request is what a decision is about.
type Request struct {
	Principal string // ARN of the caller; also aws:PrincipalArn unless Context sets it
	Action    string // service:Name
	Resource  string // ARN, or "*" for actions that take no resource

	// PrincipalID is the caller's unique id (aws:userid): AIDA… of a
	// user, AROA…:SESSION of a role session. A principal entry that is
	// a unique id matches it, and a role's id matches its sessions.
	PrincipalID string

	// Context holds the condition keys of the request, e.g.
	// "aws:multifactorauthpresent": {"true"}, "aws:sourceip",
	// "aws:currenttime" (RFC 3339), "aws:multifactorauthage" (seconds),
	// "aws:securetransport", "aws:username", "aws:resourcetag/<key>",
	// "azote:principalservice". Key names are case-insensitive; give them
	// lower-cased, the fast path. Values are case-sensitive. A key with no
	// values is absent. aws:CurrentTime and aws:EpochTime default to the
	// clock.
	Context map[string][]string
}

// Decision is the outcome of Evaluate.
type Decision int

const (
	ImplicitDeny Decision = iota // nothing allowed the request
	Allow
	ExplicitDeny // a Deny statement applied
)

func (d Decision) String() string {
	switch d {
	case ImplicitDeny:
		return "ImplicitDeny"
	case Allow:
		return "Allow"
	case ExplicitDeny:
		return "ExplicitDeny"
	}
	return "Decision(?)"
}

// Result is a decision and the statement that made it: "policyName#Sid",
// or "policyName#index" (0-based) for a statement without a Sid; empty for
// an implicit deny.
type Result struct {
	Decision  Decision
	Statement string
}

// Named is a policy with the name a Result reports it by.
type Named struct {
	Name string
	Doc  *Document
}

// evalCtx is the per-decision state. It lives on Evaluate's stack.
type evalCtx struct {
	req       *Request
	principal [1]string // backs the aws:PrincipalArn default
	clock     time.Time
}

// lookup returns the values of a lower-cased condition key.
func (ev *evalCtx) lookup(key string) []string {
	ctx := ev.req.Context
	if vs, ok := ctx[key]; ok {
		return vs
	}
	// The caller may have spelled the key in another case; scanning a
	// handful of keys is cheaper than normalising the map per request.
	for k, vs := range ctx {
		if strings.EqualFold(k, key) {
			return vs
		}
	}
	if key == "aws:principalarn" && ev.req.Principal != "" {
		ev.principal[0] = ev.req.Principal
		return ev.principal[:]
	}
	return nil
}

// variable resolves a policy variable. Multivalued keys cannot be
// variables (reference_policies_condition-single-vs-multi-valued-context-
// keys), so only a key with exactly one value resolves.
func (ev *evalCtx) variable(a *atom) (string, bool) {
	if ev == nil {
		return "", false
	}
	if vs := ev.lookup(a.text); len(vs) == 1 {
		return vs[0], true
	}
	if a.hasDef {
		return a.def, true
	}
	return "", false
}

func (ev *evalCtx) now() time.Time {
	if ev.clock.IsZero() {
		ev.clock = time.Now()
	}
	return ev.clock
}

// applies reports whether the statement applies to the request and, for a
// resource-policy Allow, how the principal matched.
func (c *compiled) applies(ev *evalCtx, inResource bool) (bool, principalMatch) {
	req := ev.req
	matched := false
	for _, p := range c.actions {
		if p.match(req.Action, true, nil) {
			matched = true
			break
		}
	}
	if matched == c.notAction {
		return false, noMatch
	}
	if c.hasResource {
		matched = false
		for i := range c.resources {
			if c.resources[i].match(req.Resource, ev) {
				matched = true
				break
			}
		}
		if matched == c.notResource {
			return false, noMatch
		}
	}
	how := directMatch
	switch {
	case c.principal != nil && c.notPrincipal:
		// NotPrincipal exempts only principals it names directly: an
		// account entry exempts the account's root, not every principal
		// in it, because AWS checks "the account first, then the user"
		// (reference_policies_elements_notprincipal).
		if c.principal.match(ev) == directMatch {
			return false, noMatch
		}
	case c.principal != nil:
		if how = c.principal.match(ev); how == noMatch {
			return false, noMatch
		}
	case inResource && !c.deny:
		// A resource-policy Allow without a Principal grants nobody.
		return false, noMatch
	}
	if !c.deny {
		// "If AWS cannot resolve a variable, this might cause the entire
		// statement to be invalid" (reference_policies_variables): an
		// Allow never applies on a guess. In a Deny the unresolved
		// variable just matches nothing.
		for i := range c.vars {
			if _, ok := ev.variable(&c.vars[i]); !ok {
				return false, noMatch
			}
		}
	}
	for i := range c.conds {
		if !c.conds[i].eval(ev) {
			return false, noMatch
		}
	}
	return true, how
}

// hit names a statement that applied; the zero hit is "none" (a real one
// always has a label).
type hit struct{ name, label string }

func (h hit) found() bool    { return h.label != "" }
func (h hit) String() string { return h.name + h.label }

// scanResult is what the statements of one kind of policy said: the first
// Deny that applied, the first Allow, and the first Allow whose principal
// matched other than through an account entry.
type scanResult struct {
	deny, allow, direct hit
}

// scan runs the statements of the policies, stopping at the first Deny.
func (s *scanResult) scan(ev *evalCtx, policies []Named, inResource bool) {
	for _, n := range policies {
		d := n.Doc
		if d == nil {
			continue
		}
		if !d.parsed {
			// Built by hand, not by Parse: nothing compiled to decide
			// with, so deny rather than guess.
			s.deny = hit{n.Name, "#unparsed"}
			return
		}
		for i := range d.compiled {
			c := &d.compiled[i]
			ok, how := c.applies(ev, inResource)
			switch {
			case !ok:
			case c.deny:
				s.deny = hit{n.Name, c.label}
				return
			default:
				if !s.allow.found() {
					s.allow = hit{n.Name, c.label}
				}
				if how == directMatch && !s.direct.found() {
					s.direct = hit{n.Name, c.label}
				}
			}
		}
	}
}

// Evaluate decides req against the caller's identity policies and the
// resource's policies, following reference_policies_evaluation-logic: an
// explicit Deny in any policy wins; otherwise, within one account, an
// Allow from either kind of policy is enough ("If either the identity-based
// policy or the resource-based policy within the same account allows the
// request and the other doesn't, the request is still allowed"); otherwise
// the request is implicitly denied.
//
// Two refinements follow AWS. A resource-policy Allow that names the
// caller only through its account (an account id or
// arn:azote:iam::ACCOUNT:root) delegates to the account, so the caller's
// identity policies must also allow. And when the caller's account and the
// resource's account (from their ARNs) differ, both an identity policy
// and a resource policy must allow
// (reference_policies_evaluation-logic-cross-account).
func Evaluate(identity, resource []Named, req *Request) Result {
	return evaluate(identity, resource, req, false)
}

// EvaluateResourceRequired is Evaluate for resources whose own policy
// must grant access: role trust policies (action sts:AssumeRole) and key
// policies. AWS names them as "exceptions to this logic, because they must
// explicitly allow access for principals"; an identity Allow alone is not
// enough, and a resource Allow through an account entry needs an identity
// Allow as well.
func EvaluateResourceRequired(identity, resource []Named, req *Request) Result {
	return evaluate(identity, resource, req, true)
}

func evaluate(identity, resource []Named, req *Request, resourceRequired bool) Result {
	if req == nil {
		return Result{}
	}
	ev := evalCtx{req: req}
	var id, res scanResult
	if id.scan(&ev, identity, false); id.deny.found() {
		return Result{Decision: ExplicitDeny, Statement: id.deny.String()}
	}
	if res.scan(&ev, resource, true); res.deny.found() {
		return Result{Decision: ExplicitDeny, Statement: res.deny.String()}
	}
	pa, ra := accountOf(req.Principal), accountOf(req.Resource)
	crossAccount := pa != "" && ra != "" && pa != ra
	var by hit
	switch {
	case crossAccount || resourceRequired:
		if id.allow.found() && res.allow.found() {
			by = res.allow
		}
		if !crossAccount && res.direct.found() {
			by = res.direct
		}
	case id.allow.found():
		by = id.allow
	case res.direct.found():
		by = res.direct
	}
	if !by.found() {
		return Result{}
	}
	return Result{Decision: Allow, Statement: by.String()}
}
