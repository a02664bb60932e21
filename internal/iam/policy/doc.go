// Package policy parses IAM policy documents in the AWS grammar and decides
// requests against them: explicit Deny wins, then an Allow from an identity
// policy or from a resource policy that names the caller, otherwise the
// request is implicitly denied.
//
// Parse is strict: anything it does not understand (an unknown element, an
// unknown condition operator, a duplicate JSON key, a malformed ARN) is an
// error, never ignored, because a policy element that is silently dropped
// changes who may do what. Everything a statement needs at decision time
// (action and resource patterns, principals, condition values) is compiled
// once by Parse, so Evaluate does no parsing of policy text and no
// allocation beyond the label of the deciding statement.
//
// The package never grants on doubt: a Document that did not come out of
// Parse denies every request, and an Allow statement whose policy variable
// cannot be resolved does not apply. It does no I/O and no logging; the
// caller records the decision in the audit trail.
package policy
