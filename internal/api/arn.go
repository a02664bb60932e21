package api

import (
	"errors"
	"strings"
)

// Partition is azote's ARN partition: arn:azote:SERVICE:REGION:ACCOUNT:RESOURCE.
const Partition = "azote"

// BuiltinAccount is the account segment of the managed policies azote
// itself defines (as "aws" is AWS's).
const BuiltinAccount = "azote"

// ARN is a parsed Amazon Resource Name of azote. Region is empty for
// every azote service today (one host is one region).
type ARN struct {
	Service  string
	Region   string
	Account  string
	Resource string
}

// ErrNotARN is returned by ParseARN for text that is not an azote ARN.
var ErrNotARN = errors.New("api: not an azote ARN (arn:azote:service::account:resource)")

// MakeARN is the ARN of resource (e.g. "user/alice", "instance/i-…") of
// service in account. Every ARN azote makes is built here.
func MakeARN(service, account, resource string) string {
	return ARN{Service: service, Account: account, Resource: resource}.String()
}

// String renders a as arn:azote:SERVICE:REGION:ACCOUNT:RESOURCE.
func (a ARN) String() string {
	return "arn:" + Partition + ":" + a.Service + ":" + a.Region + ":" + a.Account + ":" + a.Resource
}

// ParseARN parses an azote ARN: six colon-separated segments, "arn", the
// azote partition, a service, a region (may be empty), an account and a
// resource (which may itself hold colons). Patterns (wildcards, policy
// variables) are not ARNs here: policies parse their own.
func ParseARN(s string) (ARN, error) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] != Partition || parts[2] == "" || parts[4] == "" || parts[5] == "" {
		return ARN{}, ErrNotARN
	}
	return ARN{Service: parts[2], Region: parts[3], Account: parts[4], Resource: parts[5]}, nil
}

// LooksLikeARN tells whether s is meant as an ARN rather than a name: it
// starts with "arn:". Names never contain a colon, so such text is
// either an ARN or an error, never a name; ParseARN says which.
func LooksLikeARN(s string) bool { return strings.HasPrefix(s, "arn:") }

// Kind splits the resource of a into its type and name ("user/alice" →
// "user", "alice"); ok is false when the resource has no type.
func (a ARN) Kind() (kind, name string, ok bool) {
	return strings.Cut(a.Resource, "/")
}
