package policy

import (
	"slices"
	"sync"
)

// builtinText holds azote's managed policies as policy text, so they go
// through the same Parse as any customer policy and read like AWS's own.
var builtinText = map[string]string{
	// Everything, everywhere.
	"AdministratorAccess": `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AllowEverything",
      "Effect": "Allow",
      "Action": "*",
      "Resource": "*"
    }
  ]
}`,
	// Everything except managing identities and switching off or
	// rewriting the audit trail: a power user can run the platform but
	// can neither grant themselves more nor hide what they did.
	"PowerUserAccess": `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AllowAllButIamAndAuditConfig",
      "Effect": "Allow",
      "NotAction": [
        "iam:*",
        "audit:Update*",
        "audit:Create*",
        "audit:Delete*",
        "audit:Stop*",
        "audit:Start*"
      ],
      "Resource": "*"
    }
  ]
}`,
	// Reads only, of everything, as AWS's ReadOnlyAccess: every tenant's
	// console output, every volume's metrics and the whole audit trail
	// (audit:GetLogFile) included. For operators, not tenants.
	"ReadOnlyAccess": `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AllowReads",
      "Effect": "Allow",
      "Action": [
        "*:Describe*",
        "*:List*",
        "*:Get*"
      ],
      "Resource": "*"
    }
  ]
}`,
	// Reads of what is one's own, for tenants: the instances and volumes
	// tagged owner=<the caller's aws:PrincipalArn> (a user's ARN, or for
	// every session of a role the role's ARN), the image catalogue, and
	// one's own IAM user. No list of instances or volumes (a list is
	// authorised on "*", which carries no tags), no host metrics, no
	// audit trail, nobody else's console.
	"TenantReadOnlyAccess": `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "ReadOwnInstancesAndVolumes",
      "Effect": "Allow",
      "Action": [
        "compute:DescribeInstances",
        "compute:GetConsoleOutput",
        "compute:DescribeVolumes"
      ],
      "Resource": [
        "arn:azote:compute:*:*:instance/*",
        "arn:azote:compute:*:*:volume/*"
      ],
      "Condition": {
        "StringEquals": {"aws:ResourceTag/owner": "${aws:PrincipalArn}"}
      }
    },
    {
      "Sid": "ReadImageCatalogue",
      "Effect": "Allow",
      "Action": "compute:DescribeImages",
      "Resource": "*"
    },
    {
      "Sid": "ReadOwnUser",
      "Effect": "Allow",
      "Action": [
        "iam:GetUser",
        "iam:ListAccessKeys",
        "iam:ListMFADevices"
      ],
      "Resource": "arn:azote:iam::*:user/${aws:username}"
    },
    {
      "Sid": "WhoAmI",
      "Effect": "Allow",
      "Action": "sts:GetCallerIdentity",
      "Resource": "*"
    }
  ]
}`,
}

// builtins parses the managed policies once, on first use.
var builtins = sync.OnceValue(func() map[string]*Document {
	m := make(map[string]*Document, len(builtinText))
	for name, text := range builtinText {
		d, err := Parse([]byte(text))
		if err != nil {
			// The texts are constants checked by TestBuiltins.
			panic("policy: builtin " + name + ": " + err.Error())
		}
		m[name] = d
	}
	return m
})

// Builtin returns the managed policy of that name. The Document is shared:
// the caller must not modify it.
func Builtin(name string) (*Document, bool) {
	d, ok := builtins()[name]
	return d, ok
}

// BuiltinNames lists the managed policies, sorted.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtinText))
	for n := range builtinText {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
