// Package iam keeps azoted's identities and decides what they may do:
// the account and its root principal, users, groups, roles, managed and
// inline policies, access keys, virtual MFA devices and STS sessions.
//
// Secrets are stored only sealed by the host key (access-key secrets,
// MFA seeds); session tokens are sealed blobs that carry their own
// secret, so no plaintext credential is ever written. Root never has an
// access key: after `azote init` root acts only through MFA sessions.
// This package never logs and never talks to the network; every decision
// it makes is returned to the caller, who audits it.
package iam
