package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is where a policy is attached, which decides the elements it may
// use.
type Kind int

const (
	Identity Kind = iota // attached to a user, group or role
	Resource             // attached to a resource (key policy, bucket policy...)
	Trust                // a role's trust policy: who may assume it
)

func (k Kind) String() string {
	switch k {
	case Identity:
		return "identity"
	case Resource:
		return "resource"
	case Trust:
		return "trust"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Validate checks the document against the rules of its kind
// (reference_policies_elements_principal, _notprincipal, _resource):
//   - Identity: no Principal or NotPrincipal ("You cannot use the
//     Principal element in an identity-based policy"); Resource or
//     NotResource required.
//   - Resource: Principal or NotPrincipal required; Resource or
//     NotResource required; NotPrincipal only with Deny (AWS "strongly
//     recommend[s]" against it with Allow, which grants everyone else,
//     anonymous callers included).
//   - Trust: Principal required, NotPrincipal not allowed; only sts:
//     actions, given with Action; no Resource (the role is the resource).
//
// Errors wrap ErrKind.
func (d *Document) Validate(kind Kind) error {
	for i, st := range d.Statements {
		if err := st.validate(kind); err != nil {
			where := fmt.Sprintf("Statement[%d]", i)
			if st.Sid != "" {
				where += fmt.Sprintf(" (Sid %s)", quote(st.Sid))
			}
			return fmt.Errorf("%w: %s policy: %s: %w", ErrKind, kind, where, err)
		}
	}
	return nil
}

func (st *Statement) validate(kind Kind) error {
	hasP, hasNP := st.Principal != nil, st.NotPrincipal != nil
	hasR := st.Resource != nil || st.NotResource != nil
	switch kind {
	case Identity:
		if hasP || hasNP {
			return errors.New("an identity policy names no Principal or NotPrincipal")
		}
		if !hasR {
			return errors.New("a Resource or NotResource element is required")
		}
	case Resource:
		if !hasP && !hasNP {
			return errors.New("a Principal or NotPrincipal element is required")
		}
		if hasNP && st.Effect != "Deny" {
			return errors.New("a NotPrincipal element is allowed only with Effect Deny")
		}
		if !hasR {
			return errors.New("a Resource or NotResource element is required")
		}
	case Trust:
		if !hasP {
			return errors.New("a Principal element is required")
		}
		if hasNP {
			return errors.New("a NotPrincipal element is not allowed")
		}
		if st.NotAction != nil {
			return errors.New("a NotAction element is not allowed; list the sts: actions")
		}
		for _, a := range st.Action {
			if len(a) < 4 || !strings.EqualFold(a[:4], "sts:") {
				return fmt.Errorf("action %s is not an sts: action", quote(a))
			}
		}
		if hasR {
			return errors.New("a Resource or NotResource element is not allowed")
		}
	default:
		return errors.New("unknown policy kind")
	}
	return nil
}
