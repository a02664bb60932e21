package policy

import (
	"strings"
	"testing"
)

const (
	alice      = "arn:azote:iam::123456789012:user/alice"
	bob        = "arn:azote:iam::123456789012:user/bob"
	carol      = "arn:azote:iam::210987654321:user/carol" // another account
	opsRole    = "arn:azote:iam::123456789012:role/team/Ops"
	opsSession = "arn:azote:sts::123456789012:assumed-role/Ops/alice"
	instance   = "arn:azote:compute::123456789012:instance/i-0123456789abcdef0"
	instance2  = "arn:azote:compute::123456789012:instance/i-0fffffffffffffff0"
	keyARN     = "arn:azote:kms::123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	aliceUser  = "arn:azote:iam::123456789012:user/alice"
	bobUser    = "arn:azote:iam::123456789012:user/bob"
)

// pol is a named policy of a test case. An empty text names a builtin.
type pol struct{ name, text string }

type evalCase struct {
	name     string
	identity []pol
	resource []pol
	// resourceRequired evaluates with EvaluateResourceRequired.
	resourceRequired bool
	req              Request
	want             Decision
	by               string // Result.Statement
}

// ctx builds a request context from key, value pairs; a value holding
// "|" is split into several values.
func ctx(kv ...string) map[string][]string {
	m := make(map[string][]string)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			m[kv[i]] = nil
			continue
		}
		m[kv[i]] = strings.Split(kv[i+1], "|")
	}
	return m
}

var admin = pol{name: "AdministratorAccess"}

// Policies from AWS's IAM User Guide, rewritten for azote ARNs and actions.
// Each names the page it comes from.
const (
	// reference_policies_examples_aws_my-sec-creds-self-manage-mfa-only
	mfaSelfManage = `{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AllowViewAccountInfo",
            "Effect": "Allow",
            "Action": "iam:ListVirtualMFADevices",
            "Resource": "*"
        },
        {
            "Sid": "AllowManageOwnVirtualMFADevice",
            "Effect": "Allow",
            "Action": ["iam:CreateVirtualMFADevice"],
            "Resource": "arn:azote:iam::*:mfa/*"
        },
        {
            "Sid": "AllowManageOwnUserMFA",
            "Effect": "Allow",
            "Action": [
                "iam:DeactivateMFADevice",
                "iam:EnableMFADevice",
                "iam:GetUser",
                "iam:ListMFADevices",
                "iam:ResyncMFADevice"
            ],
            "Resource": "arn:azote:iam::*:user/${aws:username}"
        },
        {
            "Sid": "DenyAllExceptListedIfNoMFA",
            "Effect": "Deny",
            "NotAction": [
                "iam:CreateVirtualMFADevice",
                "iam:EnableMFADevice",
                "iam:GetUser",
                "iam:ListMFADevices",
                "iam:ListVirtualMFADevices",
                "iam:ResyncMFADevice",
                "sts:GetSessionToken"
            ],
            "Resource": "*",
            "Condition": {
                "BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}
            }
        }
    ]
}`
	// reference_policies_elements_notaction, "NotAction with Deny"
	denyNoMFA = `{
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "DenyAllUsersNotUsingMFA",
        "Effect": "Deny",
        "NotAction": "iam:*",
        "Resource": "*",
        "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}
    }]
}`
	// reference_policies_examples_aws-dates
	dateWindow = `{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "compute:RunInstances",
            "Resource": "*",
            "Condition": {
                "DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"},
                "DateLessThan": {"aws:CurrentTime": "2020-06-30T23:59:59Z"}
            }
        }
    ]
}`
	// reference_policies_examples_aws_mfa-dates (note the JSON boolean)
	mfaDates = `{
    "Version": "2012-10-17",
    "Statement": {
        "Effect": "Allow",
        "Action": [
            "compute:*",
            "kms:Decrypt",
            "kms:Encrypt"
        ],
        "Resource": "*",
        "Condition": {
            "Bool": {"aws:MultiFactorAuthPresent": true},
            "DateGreaterThan": {"aws:CurrentTime": "2017-07-01T00:00:00Z"},
            "DateLessThan": {"aws:CurrentTime": "2017-12-31T23:59:59Z"}
        }
    }
}`
	// reference_policies_examples_aws_deny-ip, with the IPv6 range of the
	// IP address operator example.
	denyIP = `{
    "Version": "2012-10-17",
    "Statement": {
        "Sid": "DenyOutsideOffice",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "NotIpAddress": {
                "aws:SourceIp": [
                    "192.0.2.0/24",
                    "203.0.113.0/24",
                    "2001:DB8:1234:5678::/64"
                ]
            },
            "Bool": {"aws:ViaAWSService": "false"}
        }
    }
}`
	// reference_policies_condition_examples-multi-valued-context-keys,
	// "Deny a single policy condition value for a multivalued context key"
	denyRestrictedTags = `{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DenyRestrictedTags",
            "Effect": "Deny",
            "Action": ["iam:Tag*", "iam:UnTag*"],
            "Resource": ["*"],
            "Condition": {
                "ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}
            }
        }
    ]
}`
	// reference_policies_multi-value-conditions, ForAllValues allow
	allowAttributes = `{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "compute:DescribeInstanceAttribute",
            "Resource": "arn:azote:compute:*:*:instance/*",
            "Condition": {
                "ForAllValues:StringEquals": {
                    "compute:Attributes": ["ID", "Message", "Tags"]
                }
            }
        }
    ]
}`
	// reference_policies_multi-value-conditions, ForAnyValue deny
	denyAttributes = `{
    "Version": "2012-10-17",
    "Statement": {
        "Effect": "Deny",
        "Action": "compute:ModifyInstanceAttribute",
        "Resource": "arn:azote:compute:*:*:instance/*",
        "Condition": {
            "ForAnyValue:StringEquals": {
                "compute:Attributes": ["ID", "PostDateTime"]
            }
        }
    }
}`
	// reference_policies_elements_condition_operators, "Null"
	noTempCreds = `{
  "Version": "2012-10-17",
  "Statement":{
      "Action":"compute:*",
      "Effect":"Allow",
      "Resource":"*",
      "Condition":{"Null":{"aws:TokenIssueTime":"true"}}
  }
}`
	// aws:MultiFactorAuthAge (reference_policies_condition-keys): MFA in
	// the last hour.
	recentMFA = `{
  "Version": "2012-10-17",
  "Statement": {
    "Sid": "RecentMFA",
    "Effect": "Allow",
    "Action": "iam:*",
    "Resource": "*",
    "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}
  }
}`
	allowCompute  = `{"Version": "2012-10-17", "Statement": {"Sid": "Compute", "Effect": "Allow", "Action": "compute:*", "Resource": "*"}}`
	denyTerminate = `{"Version": "2012-10-17", "Statement": [
  {"Effect": "Deny", "Action": "compute:TerminateInstances",
   "Resource": "arn:azote:compute::123456789012:instance/i-0123456789abcdef0"}]}`
	// reference_policies_elements_notresource
	notResource = `{
  "Version": "2012-10-17",
  "Statement": {
    "Sid": "OnlyTheBuildHost",
    "Effect": "Deny",
    "Action": "compute:*",
    "NotResource": [
      "arn:azote:compute::123456789012:instance/i-0123456789abcdef0",
      "arn:azote:compute::123456789012:instance/i-0123456789abcdef0/*"
    ]
  }
}`
	// reference_policies_elements_notaction, "NotAction with Allow"
	notActionAllow = `{
  "Version": "2012-10-17",
  "Statement": {
    "Sid": "AllButTerminate",
    "Effect": "Allow",
    "NotAction": "compute:TerminateInstances",
    "Resource": "arn:azote:compute::*:*"
  }
}`
	caseActions = `{"Version": "2012-10-17", "Statement": [
  {"Sid": "Describe", "Effect": "Allow", "Action": "COMPUTE:describe*", "Resource": "*"},
  {"Sid": "Lists", "Effect": "Allow", "Action": "*:List*", "Resource": "*"},
  {"Sid": "AssumeOnly", "Effect": "Allow", "Action": "sts:AssumeRol?", "Resource": "*"}]}`
	segments = `{"Version": "2012-10-17", "Statement": {"Sid": "OwnAccount", "Effect": "Allow",
  "Action": "compute:*", "Resource": "arn:azote:compute:*:123456789012:instance/*"}}`
	// reference_policies_variables: manage one's own access keys
	ownKeys = `{
  "Version": "2012-10-17",
  "Statement": [{
    "Sid": "OwnKeys",
    "Action": ["iam:*AccessKey*"],
    "Effect": "Allow",
    "Resource": ["arn:azote:iam::123456789012:user/${aws:username}"]
  }]
}`
	ownKeys2008 = `{
  "Version": "2008-10-17",
  "Statement": [{
    "Action": ["iam:*AccessKey*"],
    "Effect": "Allow",
    "Resource": ["arn:azote:iam::123456789012:user/${aws:username}"]
  }]
}`
	ownerTag = `{"Version": "2012-10-17", "Statement": {"Sid": "Owner", "Effect": "Allow",
  "Action": "compute:*", "Resource": "*",
  "Condition": {"StringEquals": {"aws:ResourceTag/owner": "${aws:PrincipalArn}"}}}}`
	defaultVar = `{"Version": "2012-10-17", "Statement": {"Sid": "Anon", "Effect": "Allow",
  "Action": "compute:GetConsoleOutput", "Resource": "*",
  "Condition": {"StringEquals": {"compute:Requester": "${aws:username, 'anonymous'}"}}}}`
	// reference_policies_elements_condition_operators, IfExists example
	instanceTypes = `{
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "RunInstance",
        "Effect": "Allow",
        "Action": "compute:RunInstances",
        "Resource": "*",
        "Condition": {"StringLikeIfExists": {"compute:InstanceType": ["t1.*", "t2.*", "m3.*"]}}
    }]
}`
	instanceTypesNoIfExists = `{
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "THISPOLICYDOESNOTWORK",
        "Effect": "Allow",
        "Action": "compute:RunInstances",
        "Resource": "*",
        "Condition": {"StringLike": {"compute:InstanceType": ["t1.*", "t2.*", "m3.*"]}}
    }]
}`
	denyOutsideRegion = `{"Version": "2012-10-17", "Statement": {"Sid": "LocalOnly", "Effect": "Deny",
  "Action": "compute:*", "Resource": "*",
  "Condition": {"StringNotEquals": {"aws:RequestedRegion": "local"}}}}`
	keyPolicyAlice = `{"Version": "2012-10-17", "Statement": {"Sid": "AliceDecrypts", "Effect": "Allow",
  "Principal": {"AWS": "arn:azote:iam::123456789012:user/alice"},
  "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*"}}`
	keyPolicyAccount = `{"Version": "2012-10-17", "Statement": {"Sid": "EnableIAMPolicies", "Effect": "Allow",
  "Principal": {"AWS": "arn:azote:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"}}`
	keyPolicyRole = `{"Version": "2012-10-17", "Statement": {"Sid": "Ops", "Effect": "Allow",
  "Principal": {"AWS": ["arn:azote:iam::123456789012:role/team/Ops"]}, "Action": "kms:Decrypt", "Resource": "*"}}`
	keyPolicyCarol = `{"Version": "2012-10-17", "Statement": {"Sid": "Carol", "Effect": "Allow",
  "Principal": {"AWS": "arn:azote:iam::210987654321:user/carol"}, "Action": "kms:Decrypt", "Resource": "*"}}`
	allowDecrypt = `{"Version": "2012-10-17", "Statement": {"Sid": "Decrypt", "Effect": "Allow",
  "Action": "kms:Decrypt", "Resource": "arn:azote:kms:*:*:key/*"}}`
	keyDenyCompute = `{"Version": "2012-10-17", "Statement": [
  {"Sid": "All", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
  {"Sid": "NotFromInstances", "Effect": "Deny", "Principal": {"AWS": "123456789012"}, "Action": "kms:Decrypt", "Resource": "*",
   "Condition": {"ArnLike": {"aws:SourceArn": "arn:azote:compute:*:123456789012:instance/*"}}}]}`
	// reference_policies_elements_notprincipal, "NotPrincipal With Deny"
	onlyAlice = `{"Version": "2012-10-17", "Statement": [{
  "Sid": "OnlyAlice", "Effect": "Deny",
  "NotPrincipal": {"AWS": ["arn:azote:iam::123456789012:user/alice", "arn:azote:iam::123456789012:root"]},
  "Action": "kms:*", "Resource": "*"}]}`
	trustAlice = `{"Version": "2012-10-17", "Statement": {"Sid": "Alice", "Effect": "Allow",
  "Principal": {"AWS": "arn:azote:iam::123456789012:user/alice"}, "Action": "sts:AssumeRole"}}`
	trustAccount = `{"Version": "2012-10-17", "Statement": {"Sid": "Account", "Effect": "Allow",
  "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole",
  "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}}`
	trustService = `{"Version": "2012-10-17", "Statement": {"Sid": "Compute", "Effect": "Allow",
  "Principal": {"Service": "compute.azote.internal"}, "Action": "sts:AssumeRole"}}`
	allowAssume = `{"Version": "2012-10-17", "Statement": {"Sid": "Assume", "Effect": "Allow",
  "Action": "sts:AssumeRole", "Resource": "arn:azote:iam::*:role/*"}}`
	secureOnly = `{"Version": "2012-10-17", "Statement": [
  {"Sid": "Audit", "Effect": "Allow", "Action": "audit:LookupEvents", "Resource": "*",
   "Condition": {"Bool": {"aws:SecureTransport": "true"},
                 "DateGreaterThanEquals": {"aws:CurrentTime": "1577836800"},
                 "NumericLessThanEquals": {"aws:MultiFactorAuthAge": 600}}}]}`
	ignoreCase = `{"Version": "2012-10-17", "Statement": {"Sid": "Team", "Effect": "Allow",
  "Action": "compute:*", "Resource": "*",
  "Condition": {"StringEqualsIgnoreCase": {"aws:PrincipalTag/team": ["Platform", "SRE"]},
                "StringNotEqualsIgnoreCase": {"aws:PrincipalTag/level": "INTERN"}}}}`
	// Read other users but not oneself: a NotResource with a variable.
	othersOnly = `{"Version": "2012-10-17", "Statement": {"Sid": "Others", "Effect": "Allow",
  "Action": "iam:GetUser", "NotResource": "arn:azote:iam::123456789012:user/${aws:username}"}}`
	sinceLaunch = `{"Version": "2012-10-17", "Statement": {"Sid": "Since", "Effect": "Allow",
  "Action": "compute:RunInstances", "Resource": "*",
  "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}}}`
	// reference_policies_condition_examples-multi-valued-context-keys,
	// ForAnyValue with a negated operator.
	teamTagsOnly = `{"Version": "2012-10-17", "Statement": {"Sid": "TeamTagsOnly", "Effect": "Deny",
  "Action": "iam:TagUser", "Resource": "*",
  "Condition": {"ForAnyValue:StringNotLike": {"aws:TagKeys": "team:*"}}}}`
)

var evalCases = []evalCase{
	// MFA self-management (Deny NotAction + BoolIfExists).
	{name: "mfa/no MFA key denies other services",
		identity: []pol{{"SelfMFA", mfaSelfManage}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:username", "alice")},
		want:     ExplicitDeny, by: "SelfMFA#DenyAllExceptListedIfNoMFA"},
	{name: "mfa/without MFA may enable own device",
		identity: []pol{{"SelfMFA", mfaSelfManage}},
		req:      Request{Principal: alice, Action: "iam:EnableMFADevice", Resource: aliceUser, Context: ctx("aws:username", "alice", "aws:multifactorauthpresent", "false")},
		want:     Allow, by: "SelfMFA#AllowManageOwnUserMFA"},
	{name: "mfa/not another user's device",
		identity: []pol{{"SelfMFA", mfaSelfManage}},
		req:      Request{Principal: alice, Action: "iam:EnableMFADevice", Resource: bobUser, Context: ctx("aws:username", "alice")},
		want:     ImplicitDeny},
	{name: "mfa/with MFA the deny lifts but grants nothing",
		identity: []pol{{"SelfMFA", mfaSelfManage}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:username", "alice", "aws:multifactorauthpresent", "true")},
		want:     ImplicitDeny},
	{name: "mfa/with MFA and admin",
		identity: []pol{{"SelfMFA", mfaSelfManage}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:username", "alice", "aws:multifactorauthpresent", "true")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "mfa/unresolved variable never allows",
		identity: []pol{{"SelfMFA", mfaSelfManage}},
		req:      Request{Principal: opsSession, Action: "iam:GetUser", Resource: aliceUser, Context: ctx("aws:multifactorauthpresent", "true")},
		want:     ImplicitDeny},
	{name: "mfa/action names are case-insensitive",
		identity: []pol{{"SelfMFA", mfaSelfManage}},
		req:      Request{Principal: alice, Action: "iam:listvirtualmfadevices", Resource: "*"},
		want:     Allow, by: "SelfMFA#AllowViewAccountInfo"},

	// NotAction with Deny.
	{name: "notaction-deny/no MFA",
		identity: []pol{{"MFA", denyNoMFA}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     ExplicitDeny, by: "MFA#DenyAllUsersNotUsingMFA"},
	{name: "notaction-deny/IAM not covered",
		identity: []pol{{"MFA", denyNoMFA}, admin},
		req:      Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "notaction-deny/with MFA",
		identity: []pol{{"MFA", denyNoMFA}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:MultiFactorAuthPresent", "true")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},

	// Date windows.
	{name: "dates/inside",
		identity: []pol{{"Window", dateWindow}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:currenttime", "2020-05-15T12:00:00Z")},
		want:     Allow, by: "Window#0"},
	{name: "dates/after",
		identity: []pol{{"Window", dateWindow}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:currenttime", "2020-07-01T00:00:00Z")},
		want:     ImplicitDeny},
	{name: "dates/GreaterThan is strict",
		identity: []pol{{"Window", dateWindow}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:currenttime", "2020-04-01T00:00:00Z")},
		want:     ImplicitDeny},
	{name: "dates/epoch seconds in the request",
		identity: []pol{{"Window", dateWindow}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:currenttime", "1589544000")},
		want:     Allow, by: "Window#0"},
	{name: "dates/missing key is the clock, long past the window",
		identity: []pol{{"Window", dateWindow}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     ImplicitDeny},
	{name: "mfa-dates/all conditions hold",
		identity: []pol{{"MFADates", mfaDates}},
		req:      Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN, Context: ctx("aws:multifactorauthpresent", "true", "aws:currenttime", "2017-09-01T08:30:00+02:00")},
		want:     Allow, by: "MFADates#0"},
	{name: "mfa-dates/no MFA key",
		identity: []pol{{"MFADates", mfaDates}},
		req:      Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN, Context: ctx("aws:currenttime", "2017-09-01T08:30:00Z")},
		want:     ImplicitDeny},

	// Source IP (NotIpAddress in a Deny).
	{name: "deny-ip/inside the office",
		identity: []pol{{"IP", denyIP}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:sourceip", "192.0.2.10", "aws:viaawsservice", "false")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "deny-ip/outside",
		identity: []pol{{"IP", denyIP}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:sourceip", "198.51.100.7", "aws:viaawsservice", "false")},
		want:     ExplicitDeny, by: "IP#DenyOutsideOffice"},
	{name: "deny-ip/outside but via a service",
		identity: []pol{{"IP", denyIP}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:sourceip", "198.51.100.7", "aws:viaawsservice", "true")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "deny-ip/negated operator on a missing key is true",
		identity: []pol{{"IP", denyIP}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:viaawsservice", "false")},
		want:     ExplicitDeny, by: "IP#DenyOutsideOffice"},
	{name: "deny-ip/IPv6 inside",
		identity: []pol{{"IP", denyIP}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:sourceip", "2001:db8:1234:5678::1", "aws:viaawsservice", "false")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "deny-ip/IPv6 outside",
		identity: []pol{{"IP", denyIP}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:sourceip", "2001:db8:ffff::1", "aws:viaawsservice", "false")},
		want:     ExplicitDeny, by: "IP#DenyOutsideOffice"},

	// ForAllValues / ForAnyValue.
	{name: "forall-deny/allowed prefix",
		identity: []pol{{"Tags", denyRestrictedTags}, admin},
		req:      Request{Principal: alice, Action: "iam:TagUser", Resource: bobUser, Context: ctx("aws:tagkeys", "key1:legal")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "forall-deny/two allowed values",
		identity: []pol{{"Tags", denyRestrictedTags}, admin},
		req:      Request{Principal: alice, Action: "iam:UntagUser", Resource: bobUser, Context: ctx("aws:tagkeys", "key1:hr|key1:personnel")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "forall-deny/other prefix",
		identity: []pol{{"Tags", denyRestrictedTags}, admin},
		req:      Request{Principal: alice, Action: "iam:UntagUser", Resource: bobUser, Context: ctx("aws:tagkeys", "key2:audit")},
		want:     ExplicitDeny, by: "Tags#DenyRestrictedTags"},
	{name: "forall-deny/missing key matches",
		identity: []pol{{"Tags", denyRestrictedTags}, admin},
		req:      Request{Principal: alice, Action: "iam:TagUser", Resource: bobUser},
		want:     ExplicitDeny, by: "Tags#DenyRestrictedTags"},
	{name: "forall-deny/one bad value among good",
		identity: []pol{{"Tags", denyRestrictedTags}, admin},
		req:      Request{Principal: alice, Action: "iam:TagUser", Resource: bobUser, Context: ctx("aws:tagkeys", "key1:legal|key2:audit")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "forall-allow/subset",
		identity: []pol{{"Attrs", allowAttributes}},
		req:      Request{Principal: alice, Action: "compute:DescribeInstanceAttribute", Resource: instance, Context: ctx("compute:attributes", "Message|Tags")},
		want:     Allow, by: "Attrs#0"},
	{name: "forall-allow/not a subset",
		identity: []pol{{"Attrs", allowAttributes}},
		req:      Request{Principal: alice, Action: "compute:DescribeInstanceAttribute", Resource: instance, Context: ctx("compute:attributes", "Message|UserName")},
		want:     ImplicitDeny},
	{name: "forall-allow/missing key is the documented pitfall",
		identity: []pol{{"Attrs", allowAttributes}},
		req:      Request{Principal: alice, Action: "compute:DescribeInstanceAttribute", Resource: instance},
		want:     Allow, by: "Attrs#0"},
	{name: "forany-deny/one forbidden attribute",
		identity: []pol{{"Attrs", denyAttributes}, admin},
		req:      Request{Principal: alice, Action: "compute:ModifyInstanceAttribute", Resource: instance, Context: ctx("compute:attributes", "UserName|Message|PostDateTime")},
		want:     ExplicitDeny, by: "Attrs#0"},
	{name: "forany-deny/none forbidden",
		identity: []pol{{"Attrs", denyAttributes}, admin},
		req:      Request{Principal: alice, Action: "compute:ModifyInstanceAttribute", Resource: instance, Context: ctx("compute:attributes", "UserName")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "forany-deny/missing key is false",
		identity: []pol{{"Attrs", denyAttributes}, admin},
		req:      Request{Principal: alice, Action: "compute:ModifyInstanceAttribute", Resource: instance, Context: ctx("compute:attributes", "")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},

	// Null.
	{name: "null/key absent",
		identity: []pol{{"LongTerm", noTempCreds}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     Allow, by: "LongTerm#0"},
	{name: "null/key present",
		identity: []pol{{"LongTerm", noTempCreds}},
		req:      Request{Principal: opsSession, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:tokenissuetime", "2024-01-01T00:00:00Z")},
		want:     ImplicitDeny},

	// Numeric on aws:MultiFactorAuthAge.
	{name: "mfa-age/recent",
		identity: []pol{{"Age", recentMFA}},
		req:      Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser, Context: ctx("aws:multifactorauthage", "300")},
		want:     Allow, by: "Age#RecentMFA"},
	{name: "mfa-age/too old",
		identity: []pol{{"Age", recentMFA}},
		req:      Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser, Context: ctx("aws:multifactorauthage", "7200")},
		want:     ImplicitDeny},
	{name: "mfa-age/boundary is strict",
		identity: []pol{{"Age", recentMFA}},
		req:      Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser, Context: ctx("aws:multifactorauthage", "3600")},
		want:     ImplicitDeny},
	{name: "mfa-age/no MFA at all",
		identity: []pol{{"Age", recentMFA}},
		req:      Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser},
		want:     ImplicitDeny},

	// Explicit deny across policies.
	{name: "two-policies/deny wins",
		identity: []pol{{"Compute", allowCompute}, {"NoTerminate", denyTerminate}},
		req:      Request{Principal: alice, Action: "compute:TerminateInstances", Resource: instance},
		want:     ExplicitDeny, by: "NoTerminate#0"},
	{name: "two-policies/other instance",
		identity: []pol{{"Compute", allowCompute}, {"NoTerminate", denyTerminate}},
		req:      Request{Principal: alice, Action: "compute:TerminateInstances", Resource: instance2},
		want:     Allow, by: "Compute#Compute"},
	{name: "two-policies/deny in a resource policy wins over identity allow",
		identity: []pol{admin},
		resource: []pol{{"Key", keyDenyCompute}},
		req:      Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN, Context: ctx("aws:sourcearn", instance)},
		want:     ExplicitDeny, by: "Key#NotFromInstances"},
	{name: "two-policies/ArnLike does not match",
		resource: []pol{{"Key", keyDenyCompute}},
		req:      Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN, Context: ctx("aws:sourcearn", "arn:azote:compute::210987654321:instance/i-1")},
		want:     Allow, by: "Key#All"},

	// Resource policies.
	{name: "resource/grants alone",
		resource: []pol{{"Key", keyPolicyAlice}},
		req:      Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN},
		want:     Allow, by: "Key#AliceDecrypts"},
	{name: "resource/other principal",
		resource: []pol{{"Key", keyPolicyAlice}},
		req:      Request{Principal: bob, Action: "kms:Decrypt", Resource: keyARN},
		want:     ImplicitDeny},
	{name: "resource/account principal delegates",
		resource: []pol{{"Key", keyPolicyAccount}},
		req:      Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN},
		want:     ImplicitDeny},
	{name: "resource/account principal and identity allow",
		identity: []pol{{"Decrypt", allowDecrypt}},
		resource: []pol{{"Key", keyPolicyAccount}},
		req:      Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN},
		want:     Allow, by: "Decrypt#Decrypt"},
	{name: "resource/the account root itself",
		resource: []pol{{"Key", keyPolicyAccount}},
		req:      Request{Principal: "arn:azote:iam::123456789012:root", Action: "kms:ScheduleKeyDeletion", Resource: keyARN},
		want:     Allow, by: "Key#EnableIAMPolicies"},
	{name: "resource/role entry covers its sessions",
		resource: []pol{{"Key", keyPolicyRole}},
		req:      Request{Principal: opsSession, Action: "kms:Decrypt", Resource: keyARN},
		want:     Allow, by: "Key#Ops"},
	{name: "resource/not another role's session",
		resource: []pol{{"Key", keyPolicyRole}},
		req:      Request{Principal: "arn:azote:sts::123456789012:assumed-role/Dev/alice", Action: "kms:Decrypt", Resource: keyARN},
		want:     ImplicitDeny},
	{name: "cross-account/resource policy alone is not enough",
		resource: []pol{{"Key", keyPolicyCarol}},
		req:      Request{Principal: carol, Action: "kms:Decrypt", Resource: keyARN},
		want:     ImplicitDeny},
	{name: "cross-account/both allow",
		identity: []pol{{"Decrypt", allowDecrypt}},
		resource: []pol{{"Key", keyPolicyCarol}},
		req:      Request{Principal: carol, Action: "kms:Decrypt", Resource: keyARN},
		want:     Allow, by: "Key#Carol"},
	{name: "cross-account/identity alone is not enough",
		identity: []pol{admin},
		req:      Request{Principal: carol, Action: "kms:Decrypt", Resource: keyARN},
		want:     ImplicitDeny},
	{name: "notprincipal/named principal exempt",
		identity: []pol{admin},
		resource: []pol{{"Key", onlyAlice}},
		req:      Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "notprincipal/account entry does not exempt its users",
		identity: []pol{admin},
		resource: []pol{{"Key", onlyAlice}},
		req:      Request{Principal: bob, Action: "kms:Decrypt", Resource: keyARN},
		want:     ExplicitDeny, by: "Key#OnlyAlice"},

	// NotResource, NotAction.
	{name: "notresource/listed resource not denied",
		identity: []pol{{"Build", notResource}, admin},
		req:      Request{Principal: alice, Action: "compute:TerminateInstances", Resource: instance},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "notresource/other resource denied",
		identity: []pol{{"Build", notResource}, admin},
		req:      Request{Principal: alice, Action: "compute:TerminateInstances", Resource: instance2},
		want:     ExplicitDeny, by: "Build#OnlyTheBuildHost"},
	{name: "notresource/other service out of scope",
		identity: []pol{{"Build", notResource}, admin},
		req:      Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "notaction-allow/other action",
		identity: []pol{{"NA", notActionAllow}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     Allow, by: "NA#AllButTerminate"},
	{name: "notaction-allow/excluded action",
		identity: []pol{{"NA", notActionAllow}},
		req:      Request{Principal: alice, Action: "compute:terminateinstances", Resource: instance},
		want:     ImplicitDeny},
	{name: "notaction-allow/resource scope",
		identity: []pol{{"NA", notActionAllow}},
		req:      Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser},
		want:     ImplicitDeny},

	// Action and resource matching.
	{name: "actions/case-insensitive wildcard",
		identity: []pol{{"Case", caseActions}},
		req:      Request{Principal: alice, Action: "compute:DescribeInstances", Resource: instance},
		want:     Allow, by: "Case#Describe"},
	{name: "actions/wildcard service",
		identity: []pol{{"Case", caseActions}},
		req:      Request{Principal: alice, Action: "iam:ListUsers", Resource: "*"},
		want:     Allow, by: "Case#Lists"},
	{name: "actions/no match",
		identity: []pol{{"Case", caseActions}},
		req:      Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser},
		want:     ImplicitDeny},
	{name: "actions/question mark is one character",
		identity: []pol{{"Case", caseActions}},
		req:      Request{Principal: alice, Action: "sts:AssumeRole", Resource: opsRole},
		want:     Allow, by: "Case#AssumeOnly"},
	{name: "actions/question mark is not many",
		identity: []pol{{"Case", caseActions}},
		req:      Request{Principal: alice, Action: "sts:AssumeRoleWithWebIdentity", Resource: opsRole},
		want:     ImplicitDeny},
	{name: "resources/own account",
		identity: []pol{{"Seg", segments}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     Allow, by: "Seg#OwnAccount"},
	{name: "resources/star stays inside its segment",
		identity: []pol{{"Seg", segments}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: "arn:azote:compute:x:999999999999:y:123456789012:instance/i-1"},
		want:     ImplicitDeny},
	{name: "resources/ARN is case-sensitive",
		identity: []pol{{"Seg", segments}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: "arn:azote:compute::123456789012:Instance/i-1"},
		want:     ImplicitDeny},

	// Policy variables.
	{name: "vars/own user",
		identity: []pol{{"Keys", ownKeys}},
		req:      Request{Principal: alice, Action: "iam:CreateAccessKey", Resource: aliceUser, Context: ctx("aws:username", "alice")},
		want:     Allow, by: "Keys#OwnKeys"},
	{name: "vars/someone else",
		identity: []pol{{"Keys", ownKeys}},
		req:      Request{Principal: alice, Action: "iam:CreateAccessKey", Resource: bobUser, Context: ctx("aws:username", "alice")},
		want:     ImplicitDeny},
	{name: "vars/value is literal, not a wildcard",
		identity: []pol{{"Keys", ownKeys}},
		req:      Request{Principal: alice, Action: "iam:CreateAccessKey", Resource: bobUser, Context: ctx("aws:username", "*")},
		want:     ImplicitDeny},
	{name: "vars/2008 has no variables",
		identity: []pol{{"Keys", ownKeys2008}},
		req:      Request{Principal: alice, Action: "iam:CreateAccessKey", Resource: aliceUser, Context: ctx("aws:username", "alice")},
		want:     ImplicitDeny},
	{name: "vars/2008 literal text",
		identity: []pol{{"Keys", ownKeys2008}},
		req:      Request{Principal: alice, Action: "iam:CreateAccessKey", Resource: "arn:azote:iam::123456789012:user/${aws:username}"},
		want:     Allow, by: "Keys#0"},
	{name: "vars/PrincipalArn from the request",
		identity: []pol{{"Owner", ownerTag}},
		req:      Request{Principal: alice, Action: "compute:StopInstances", Resource: instance, Context: ctx("aws:resourcetag/owner", alice)},
		want:     Allow, by: "Owner#Owner"},
	{name: "vars/PrincipalArn mismatch",
		identity: []pol{{"Owner", ownerTag}},
		req:      Request{Principal: bob, Action: "compute:StopInstances", Resource: instance, Context: ctx("aws:resourcetag/owner", alice)},
		want:     ImplicitDeny},
	{name: "vars/default value",
		identity: []pol{{"Anon", defaultVar}},
		req:      Request{Principal: alice, Action: "compute:GetConsoleOutput", Resource: instance, Context: ctx("compute:requester", "anonymous")},
		want:     Allow, by: "Anon#Anon"},

	// IfExists.
	{name: "ifexists/allowed type",
		identity: []pol{{"Types", instanceTypes}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("compute:instancetype", "t2.micro")},
		want:     Allow, by: "Types#RunInstance"},
	{name: "ifexists/other type",
		identity: []pol{{"Types", instanceTypes}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("compute:instancetype", "c5.large")},
		want:     ImplicitDeny},
	{name: "ifexists/key absent",
		identity: []pol{{"Types", instanceTypes}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: "arn:azote:compute::123456789012:image/img-1"},
		want:     Allow, by: "Types#RunInstance"},
	{name: "ifexists/without it the absent key fails",
		identity: []pol{{"Types", instanceTypesNoIfExists}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: "arn:azote:compute::123456789012:image/img-1"},
		want:     ImplicitDeny},
	{name: "negated/StringNotEquals on a missing key denies",
		identity: []pol{{"Region", denyOutsideRegion}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     ExplicitDeny, by: "Region#LocalOnly"},
	{name: "negated/StringNotEquals on the right value",
		identity: []pol{{"Region", denyOutsideRegion}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:requestedregion", "local")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "typed/bool, epoch date and JSON number",
		identity: []pol{{"Audit", secureOnly}},
		req:      Request{Principal: alice, Action: "audit:LookupEvents", Resource: "*", Context: ctx("aws:securetransport", "true", "aws:currenttime", "2024-02-29T10:00:00Z", "aws:multifactorauthage", "600")},
		want:     Allow, by: "Audit#Audit"},
	{name: "typed/plain HTTP",
		identity: []pol{{"Audit", secureOnly}},
		req:      Request{Principal: alice, Action: "audit:LookupEvents", Resource: "*", Context: ctx("aws:securetransport", "false", "aws:currenttime", "2024-02-29T10:00:00Z", "aws:multifactorauthage", "600")},
		want:     ImplicitDeny},
	{name: "ignorecase/match",
		identity: []pol{{"Team", ignoreCase}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:principaltag/team", "sre", "aws:principaltag/level", "senior")},
		want:     Allow, by: "Team#Team"},
	{name: "ignorecase/negated match",
		identity: []pol{{"Team", ignoreCase}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:principaltag/team", "sre", "aws:principaltag/level", "intern")},
		want:     ImplicitDeny},

	// Trust policies: the role's own policy must allow.
	{name: "trust/named user",
		resource: []pol{{"Trust", trustAlice}}, resourceRequired: true,
		req:  Request{Principal: alice, Action: "sts:AssumeRole", Resource: opsRole},
		want: Allow, by: "Trust#Alice"},
	{name: "trust/identity allow is not enough",
		identity: []pol{{"Assume", allowAssume}}, resource: []pol{{"Trust", trustAlice}}, resourceRequired: true,
		req:  Request{Principal: bob, Action: "sts:AssumeRole", Resource: opsRole},
		want: ImplicitDeny},
	{name: "trust/account needs identity allow",
		resource: []pol{{"Trust", trustAccount}}, resourceRequired: true,
		req:  Request{Principal: bob, Action: "sts:AssumeRole", Resource: opsRole, Context: ctx("aws:multifactorauthpresent", "true")},
		want: ImplicitDeny},
	{name: "trust/account with identity allow",
		identity: []pol{{"Assume", allowAssume}}, resource: []pol{{"Trust", trustAccount}}, resourceRequired: true,
		req:  Request{Principal: bob, Action: "sts:AssumeRole", Resource: opsRole, Context: ctx("aws:multifactorauthpresent", "true")},
		want: Allow, by: "Trust#Account"},
	{name: "trust/service principal",
		resource: []pol{{"Trust", trustService}}, resourceRequired: true,
		req:  Request{Action: "sts:AssumeRole", Resource: opsRole, Context: ctx("azote:principalservice", "compute.azote.internal")},
		want: Allow, by: "Trust#Compute"},
	{name: "trust/other service",
		resource: []pol{{"Trust", trustService}}, resourceRequired: true,
		req:  Request{Action: "sts:AssumeRole", Resource: opsRole, Context: ctx("azote:principalservice", "audit.azote.internal")},
		want: ImplicitDeny},

	// Built-in policies.
	{name: "builtin/power user cannot touch IAM",
		identity: []pol{{name: "PowerUserAccess"}},
		req:      Request{Principal: alice, Action: "iam:AttachUserPolicy", Resource: aliceUser},
		want:     ImplicitDeny},
	{name: "builtin/power user cannot stop the audit trail",
		identity: []pol{{name: "PowerUserAccess"}},
		req:      Request{Principal: alice, Action: "audit:StopLogging", Resource: "*"},
		want:     ImplicitDeny},
	{name: "builtin/power user reads the audit trail",
		identity: []pol{{name: "PowerUserAccess"}},
		req:      Request{Principal: alice, Action: "audit:LookupEvents", Resource: "*"},
		want:     Allow, by: "PowerUserAccess#AllowAllButIamAndAuditConfig"},
	{name: "builtin/power user assumes roles",
		identity: []pol{{name: "PowerUserAccess"}},
		req:      Request{Principal: alice, Action: "sts:AssumeRole", Resource: opsRole},
		want:     Allow, by: "PowerUserAccess#AllowAllButIamAndAuditConfig"},
	{name: "builtin/read only describes",
		identity: []pol{{name: "ReadOnlyAccess"}},
		req:      Request{Principal: alice, Action: "compute:DescribeInstances", Resource: "*"},
		want:     Allow, by: "ReadOnlyAccess#AllowReads"},
	{name: "builtin/read only cannot run",
		identity: []pol{{name: "ReadOnlyAccess"}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     ImplicitDeny},
	// Gaps a mutation run found.
	{name: "clock/missing CurrentTime is now",
		identity: []pol{{"Since", sinceLaunch}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     Allow, by: "Since#Since"},
	{name: "vars/NotResource with the variable set",
		identity: []pol{{"Others", othersOnly}},
		req:      Request{Principal: alice, Action: "iam:GetUser", Resource: bobUser, Context: ctx("aws:username", "alice")},
		want:     Allow, by: "Others#Others"},
	{name: "vars/NotResource excludes oneself",
		identity: []pol{{"Others", othersOnly}},
		req:      Request{Principal: alice, Action: "iam:GetUser", Resource: aliceUser, Context: ctx("aws:username", "alice")},
		want:     ImplicitDeny},
	{name: "vars/unresolved variable cannot widen an Allow",
		identity: []pol{{"Others", othersOnly}},
		req:      Request{Principal: opsSession, Action: "iam:GetUser", Resource: bobUser},
		want:     ImplicitDeny},
	{name: "trust/account id names its root directly",
		resource: []pol{{"Trust", trustAccount}}, resourceRequired: true,
		req:  Request{Principal: "arn:azote:iam::123456789012:root", Action: "sts:AssumeRole", Resource: opsRole, Context: ctx("aws:multifactorauthpresent", "true")},
		want: Allow, by: "Trust#Account"},
	{name: "deny-ip/IPv4-mapped IPv6 address",
		identity: []pol{{"IP", denyIP}, admin},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:sourceip", "::ffff:192.0.2.10", "aws:viaawsservice", "false")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "resource/an Allow without Principal grants nobody",
		resource: []pol{{"NoPrincipal", allowCompute}},
		req:      Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want:     ImplicitDeny},
	{name: "forany-negated/one tag outside the team",
		identity: []pol{{"Team", teamTagsOnly}, admin},
		req:      Request{Principal: alice, Action: "iam:TagUser", Resource: bobUser, Context: ctx("aws:tagkeys", "team:a|cost")},
		want:     ExplicitDeny, by: "Team#TeamTagsOnly"},
	{name: "forany-negated/all team tags",
		identity: []pol{{"Team", teamTagsOnly}, admin},
		req:      Request{Principal: alice, Action: "iam:TagUser", Resource: bobUser, Context: ctx("aws:tagkeys", "team:a|team:b")},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "forany-negated/missing key is false",
		identity: []pol{{"Team", teamTagsOnly}, admin},
		req:      Request{Principal: alice, Action: "iam:TagUser", Resource: bobUser},
		want:     Allow, by: "AdministratorAccess#AllowEverything"},
	{name: "nothing attached",
		req:  Request{Principal: alice, Action: "compute:RunInstances", Resource: instance},
		want: ImplicitDeny},
}

func named(t testing.TB, ps []pol) []Named {
	t.Helper()
	out := make([]Named, len(ps))
	for i, p := range ps {
		if p.text == "" {
			d, ok := Builtin(p.name)
			if !ok {
				t.Fatalf("no builtin %q", p.name)
			}
			out[i] = Named{p.name, d}
			continue
		}
		d, err := Parse([]byte(p.text))
		if err != nil {
			t.Fatalf("policy %s: %v", p.name, err)
		}
		out[i] = Named{p.name, d}
	}
	return out
}

func TestEvaluate(t *testing.T) {
	if len(evalCases) < 40 {
		t.Fatalf("only %d cases", len(evalCases))
	}
	for _, tc := range evalCases {
		t.Run(tc.name, func(t *testing.T) {
			id, res := named(t, tc.identity), named(t, tc.resource)
			eval := Evaluate
			if tc.resourceRequired {
				eval = EvaluateResourceRequired
			}
			req := tc.req
			got := eval(id, res, &req)
			if got.Decision != tc.want || got.Statement != tc.by {
				t.Errorf("got %v by %q, want %v by %q", got.Decision, got.Statement, tc.want, tc.by)
			}
		})
	}
}
