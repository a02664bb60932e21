package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Principals is a Principal or NotPrincipal element: "*" (All), or an
// object with "AWS" entries (ARNs, account ids, "*") and "Service" entries
// (service principal names).
type Principals struct {
	All     bool
	AWS     []string
	Service []string
}

// MarshalJSON writes the element back in the form Parse reads.
func (p Principals) MarshalJSON() ([]byte, error) {
	if p.All {
		return []byte(`"*"`), nil
	}
	var o struct {
		AWS     stringOrList `json:"AWS,omitempty"`
		Service stringOrList `json:"Service,omitempty"`
	}
	o.AWS, o.Service = p.AWS, p.Service
	return marshalNoEscape(o)
}

// principalSet is a compiled Principals. Account entries (an account id or
// arn:azote:iam::ACCOUNT:root) stand for the account: they match every
// principal of it, but per reference_policies_elements_principal an Allow
// to an account "delegates authority to the account" — its own identity
// policies must still grant — so a match through an account is reported
// apart from a direct one.
type principalSet struct {
	all      bool // "*": everyone, services included
	anyAWS   bool // {"AWS": "*"}: every IAM principal
	accounts []string
	arns     []string  // users, roles, sessions, root ARNs: exact
	ids      []string  // unique ids of users and roles
	roles    []roleRef // role entries, which also stand for their sessions
	services []string
}

type roleRef struct{ account, name string }

// principalMatch says how a caller matched a principal element.
type principalMatch uint8

const (
	noMatch     principalMatch = iota
	viaAccount                 // only through an account entry
	directMatch                // by name, by "*", or as a service
)

var errPrincipal = errors.New("bad principal")

// parsePrincipals reads a Principal/NotPrincipal value.
func parsePrincipals(raw json.RawMessage) (*Principals, *principalSet, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, nil, err
		}
		if s != "*" {
			return nil, nil, fmt.Errorf(`%w: a string principal must be "*", not %s`, errPrincipal, quote(s))
		}
		return &Principals{All: true}, &principalSet{all: true}, nil
	}
	obj, err := object(raw)
	if err != nil {
		return nil, nil, fmt.Errorf(`%w: must be "*" or an object`, errPrincipal)
	}
	if len(obj) == 0 {
		return nil, nil, fmt.Errorf("%w: empty principal object", errPrincipal)
	}
	p, ps := &Principals{}, &principalSet{}
	for k, v := range obj {
		list, err := stringList(v)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %w", errPrincipal, k, err)
		}
		switch k {
		case "AWS":
			for _, e := range list {
				if err := ps.addAWS(e); err != nil {
					return nil, nil, fmt.Errorf("%w: AWS %s: %w", errPrincipal, quote(e), err)
				}
			}
			p.AWS = list
		case "Service":
			for _, e := range list {
				if e == "" || strings.ContainsAny(e, "*? ") {
					return nil, nil, fmt.Errorf("%w: Service %s: not a service principal name", errPrincipal, quote(e))
				}
			}
			ps.services = list
			p.Service = list
		default:
			// Federated and CanonicalUser have no meaning in azote.
			return nil, nil, fmt.Errorf("%w: unsupported principal type %s", errPrincipal, quote(k))
		}
	}
	return p, ps, nil
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// IsUniqueID tells whether s has the form of the unique id of a user
// (AIDA…) or a role (AROA…). A policy may name a principal by its id;
// IAM stores a user or role named by ARN under its id, so that the entry
// keeps meaning that identity: a new one made under the same name does
// not match it, and once the identity is deleted nothing does.
func IsUniqueID(s string) bool {
	if len(s) < 5 || len(s) > 128 || !strings.HasPrefix(s, "AIDA") && !strings.HasPrefix(s, "AROA") {
		return false
	}
	for i := range len(s) {
		if (s[i] < 'A' || s[i] > 'Z') && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}

// addAWS adds one "AWS" entry. "You cannot use a wildcard to match part
// of a principal name or ARN" (reference_policies_elements_principal).
func (ps *principalSet) addAWS(e string) error {
	switch {
	case e == "*":
		ps.anyAWS = true
		return nil
	case isAccountID(e):
		ps.accounts = append(ps.accounts, e)
		return nil
	case IsUniqueID(e):
		ps.ids = append(ps.ids, e)
		return nil
	case strings.ContainsAny(e, "*?"):
		return errors.New("wildcards are not allowed in principal ARNs")
	}
	parts, ok := splitARN(e)
	if !ok || parts[1] != "azote" || !isAccountID(parts[4]) || parts[3] != "" {
		return errors.New("not an account id, a unique id or an arn:azote:iam/sts principal ARN")
	}
	kind, rest, _ := strings.Cut(parts[5], "/")
	switch {
	case parts[2] == "iam" && parts[5] == "root":
		ps.accounts = append(ps.accounts, parts[4])
		ps.arns = append(ps.arns, e)
	case parts[2] == "iam" && kind == "user" && rest != "":
		ps.arns = append(ps.arns, e)
	case parts[2] == "iam" && kind == "role" && rest != "":
		ps.arns = append(ps.arns, e)
		ps.roles = append(ps.roles, roleRef{parts[4], rest[strings.LastIndexByte(rest, '/')+1:]})
	case parts[2] == "sts" && kind == "assumed-role" && strings.Count(rest, "/") == 1 && !strings.HasPrefix(rest, "/") && !strings.HasSuffix(rest, "/"):
		ps.arns = append(ps.arns, e)
	default:
		return errors.New("not a root, user, role or assumed-role ARN")
	}
	return nil
}

// match says how the caller (req.Principal, or a service named in
// azote:principalservice) matches the set.
func (ps *principalSet) match(ev *evalCtx) principalMatch {
	if ps.all {
		return directMatch
	}
	p := ev.req.Principal
	if p != "" {
		if ps.anyAWS {
			return directMatch
		}
		for _, a := range ps.arns {
			if a == p {
				return directMatch
			}
		}
		parts, ok := splitARN(p)
		if ok && parts[1] == "azote" {
			// A role entry covers the role's sessions, whose ARNs
			// (arn:azote:sts::A:assumed-role/NAME/SESSION) drop the path.
			if kind, rest, _ := strings.Cut(parts[5], "/"); parts[2] == "sts" && kind == "assumed-role" {
				name, _, _ := strings.Cut(rest, "/")
				for _, r := range ps.roles {
					if r.account == parts[4] && r.name == name {
						return directMatch
					}
				}
			}
			if parts[2] == "iam" || parts[2] == "sts" {
				for _, a := range ps.accounts {
					if a == parts[4] {
						if parts[2] == "iam" && parts[5] == "root" {
							return directMatch // the account itself
						}
						return viaAccount
					}
				}
			}
		}
	}
	if id := ev.req.PrincipalID; id != "" {
		for _, u := range ps.ids {
			// A role's id also stands for its sessions (ROLEID:SESSION).
			if rest, ok := strings.CutPrefix(id, u); ok && (rest == "" || rest[0] == ':') {
				return directMatch
			}
		}
	}
	if len(ps.services) > 0 {
		for _, v := range ev.lookup("azote:principalservice") {
			for _, s := range ps.services {
				if v == s {
					return directMatch
				}
			}
		}
	}
	return noMatch
}
