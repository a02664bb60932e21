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
	// Reads only.
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
