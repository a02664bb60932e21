package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// stmt wraps one statement body in a 2012-10-17 document.
func stmt(body string) string {
	return `{"Version": "2012-10-17", "Statement": {` + body + `}}`
}

func TestParseErrors(t *testing.T) {
	big := `{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Sid": "` +
		strings.Repeat("A", MaxSize) + `"}}`
	tests := []struct {
		name, text string
		want       error
		msg        string // part of the message
	}{
		{"bad Effect", stmt(`"Effect": "allow", "Action": "*", "Resource": "*"`), ErrInvalid, `Effect must be "Allow" or "Deny"`},
		{"no Effect", stmt(`"Action": "*", "Resource": "*"`), ErrInvalid, "Effect is required"},
		{"Effect not a string", stmt(`"Effect": true, "Action": "*", "Resource": "*"`), ErrInvalid, "Effect"},
		{"Action and NotAction", stmt(`"Effect": "Allow", "Action": "*", "NotAction": "iam:*", "Resource": "*"`), ErrInvalid, "exactly one of Action and NotAction"},
		{"no Action", stmt(`"Effect": "Allow", "Resource": "*"`), ErrInvalid, "exactly one of Action and NotAction"},
		{"empty Action", stmt(`"Effect": "Allow", "Action": [], "Resource": "*"`), ErrInvalid, "Action: must not be empty"},
		{"Action not service:Name", stmt(`"Effect": "Allow", "Action": "compute", "Resource": "*"`), ErrInvalid, "service:Name"},
		{"Action with a space", stmt(`"Effect": "Allow", "Action": "compute:Run Instances", "Resource": "*"`), ErrInvalid, "not allowed in an action"},
		{"Action list of numbers", stmt(`"Effect": "Allow", "Action": [1], "Resource": "*"`), ErrInvalid, "Action"},
		{"unknown operator", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEqualz": {"aws:username": "a"}}`), ErrInvalid, `unknown condition operator "StringEqualz"`},
		{"NullIfExists", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NullIfExists": {"aws:username": "true"}}`), ErrInvalid, "unknown condition operator"},
		{"set of Null", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"ForAnyValue:Null": {"aws:username": "true"}}`), ErrInvalid, "unknown condition operator"},
		{"operator case", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"stringequals": {"aws:username": "a"}}`), ErrInvalid, "unknown condition operator"},
		{"BinaryEquals", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"BinaryEquals": {"aws:username": "QQ=="}}`), ErrInvalid, "unknown condition operator"},
		{"condition key without prefix", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"SourceIp": "10.0.0.0/8"}}`), ErrInvalid, "prefix:name"},
		{"condition value null", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"aws:username": null}}`), ErrInvalid, "values must be"},
		{"condition values empty", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"aws:username": []}}`), ErrInvalid, "no values"},
		{"condition operator empty", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {}}`), ErrInvalid, "non-empty object"},
		{"bad number", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"aws:multifactorauthage": "ten"}}`), ErrInvalid, "not a decimal number"},
		{"NaN", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"aws:multifactorauthage": "NaN"}}`), ErrInvalid, "not a decimal number"},
		{"bad date", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"DateLessThan": {"aws:currenttime": "next tuesday"}}`), ErrInvalid, "RFC 3339"},
		{"bad CIDR", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"aws:sourceip": "300.1.1.0/24"}}`), ErrInvalid, "CIDR"},
		{"bad Bool", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:securetransport": "yes"}}`), ErrInvalid, `"true" or "false"`},
		{"variable in a Bool", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:securetransport": "${aws:x}"}}`), ErrInvalid, `"true" or "false"`},
		{"ArnLike value not an ARN", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"ArnLike": {"aws:sourcearn": "instance/*"}}`), ErrInvalid, "ARN"},
		{"unknown top-level key", `{"Version": "2012-10-17", "Statements": []}`, ErrInvalid, `unknown element "Statements"`},
		{"unknown statement key", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Actions": "*"`), ErrInvalid, `unknown element "Actions"`},
		{"element names are case-sensitive", stmt(`"effect": "Allow", "Action": "*", "Resource": "*"`), ErrInvalid, `unknown element "effect"`},
		{"wrong Version", `{"Version": "2012-10-18", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}`, ErrInvalid, "Version must be"},
		{"no Version", `{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}`, ErrInvalid, "Version is required"},
		{"no Statement", `{"Version": "2012-10-17"}`, ErrInvalid, "Statement is required"},
		{"empty Statement", `{"Version": "2012-10-17", "Statement": []}`, ErrInvalid, "Statement is empty"},
		{"Statement a string", `{"Version": "2012-10-17", "Statement": "Allow"}`, ErrInvalid, "Statement must be"},
		{"statement not an object", `{"Version": "2012-10-17", "Statement": ["Allow"]}`, ErrInvalid, "must be an object"},
		{"not JSON", `{"Version": "2012-10-17",`, ErrSyntax, ""},
		{"not JSON at all", `Version: 2012-10-17`, ErrSyntax, ""},
		{"empty", ``, ErrSyntax, "empty"},
		{"top level array", `[{"Version": "2012-10-17"}]`, ErrSyntax, "must be a JSON object"},
		{"top level null", `null`, ErrSyntax, "must be a JSON object"},
		{"trailing data", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*"`) + `{}`, ErrSyntax, "after the top-level object"},
		{"duplicate key", stmt(`"Effect": "Deny", "Effect": "Allow", "Action": "*", "Resource": "*"`), ErrSyntax, `duplicate key "Effect"`},
		{"invalid UTF-8", stmt(`"Sid": "a` + "\xff" + `", "Effect": "Allow", "Action": "*", "Resource": "*"`), ErrSyntax, "UTF-8"},
		{"nested too deeply", `{"Version": "2012-10-17", "Id": [[[[[[[[[["x"]]]]]]]]]]}`, ErrSyntax, "nested too deeply"},
		{"oversized", big, ErrTooLarge, ""},
		{"Resource and NotResource", stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "NotResource": "*"`), ErrInvalid, "cannot both"},
		{"Resource not an ARN", stmt(`"Effect": "Allow", "Action": "*", "Resource": "instance/i-1"`), ErrInvalid, "must be \"*\" or an ARN"},
		{"Resource in another partition", stmt(`"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::bucket"`), ErrInvalid, "partition"},
		{"variable outside the resource part", stmt(`"Effect": "Allow", "Action": "*", "Resource": "arn:azote:iam::${aws:PrincipalAccount}:user/x"`), ErrInvalid, "resource part"},
		{"unterminated variable", stmt(`"Effect": "Allow", "Action": "*", "Resource": "arn:azote:iam::123456789012:user/${aws:username"`), ErrInvalid, ""},
		{"malformed variable default", stmt(`"Effect": "Allow", "Action": "*", "Resource": "arn:azote:iam::123456789012:user/${aws:username, anonymous}"`), ErrInvalid, "malformed policy variable"},
		{"Principal and NotPrincipal", stmt(`"Effect": "Deny", "Principal": "*", "NotPrincipal": "*", "Action": "*", "Resource": "*"`), ErrInvalid, "cannot both"},
		{"Principal wildcard ARN", stmt(`"Effect": "Allow", "Principal": {"AWS": "arn:azote:iam::123456789012:user/*"}, "Action": "*", "Resource": "*"`), ErrInvalid, "wildcards are not allowed"},
		{"Principal Federated", stmt(`"Effect": "Allow", "Principal": {"Federated": "idp.example"}, "Action": "*", "Resource": "*"`), ErrInvalid, "unsupported principal type"},
		{"Principal string", stmt(`"Effect": "Allow", "Principal": "arn:azote:iam::123456789012:root", "Action": "*", "Resource": "*"`), ErrInvalid, `must be "*"`},
		{"Principal short account", stmt(`"Effect": "Allow", "Principal": {"AWS": "12345"}, "Action": "*", "Resource": "*"`), ErrInvalid, "not an account id"},
		{"Principal group", stmt(`"Effect": "Allow", "Principal": {"AWS": "arn:azote:iam::123456789012:group/ops"}, "Action": "*", "Resource": "*"`), ErrInvalid, "not a root, user, role"},
		{"Principal empty", stmt(`"Effect": "Allow", "Principal": {}, "Action": "*", "Resource": "*"`), ErrInvalid, "empty principal"},
		{"Sid with a dash", stmt(`"Sid": "my-sid", "Effect": "Allow", "Action": "*", "Resource": "*"`), ErrInvalid, "only ASCII letters and digits"},
		{"duplicate Sid", `{"Version": "2012-10-17", "Statement": [
			{"Sid": "A", "Effect": "Allow", "Action": "*", "Resource": "*"},
			{"Sid": "A", "Effect": "Deny", "Action": "*", "Resource": "*"}]}`, ErrInvalid, `Statement[1]: Sid "A" already used by Statement[0]`},
		{"names the statement", `{"Version": "2012-10-17", "Statement": [
			{"Effect": "Allow", "Action": "*", "Resource": "*"},
			{"Sid": "Second", "Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"DateLessThan": {"aws:currenttime": "soon"}}}]}`,
			ErrInvalid, `Statement[1] (Sid "Second"): Condition DateLessThan "aws:currenttime": value "soon"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse([]byte(tc.text))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %v, %v; want %v", d, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

// TestParseForms checks that the short and long forms of the grammar mean
// the same thing.
func TestParseForms(t *testing.T) {
	short := `{"Version": "2012-10-17", "Id": "p1", "Statement": {"Sid": "S", "Effect": "Allow",
		"Action": "compute:RunInstances", "Resource": "*",
		"Condition": {"Bool": {"aws:SecureTransport": true}, "NumericLessThan": {"aws:MultiFactorAuthAge": 60}}}}`
	long := `{"Version": "2012-10-17", "Id": "p1", "Statement": [{"Sid": "S", "Effect": "Allow",
		"Action": ["compute:RunInstances"], "Resource": ["*"],
		"Condition": {"Bool": {"aws:SecureTransport": ["true"]}, "NumericLessThan": {"aws:MultiFactorAuthAge": ["60"]}}}]}`
	a, err := Parse([]byte(short))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(long))
	if err != nil {
		t.Fatal(err)
	}
	want := []Statement{{
		Sid: "S", Effect: "Allow",
		Action: []string{"compute:RunInstances"}, Resource: []string{"*"},
		Condition: Conditions{
			"Bool":            {"aws:SecureTransport": {"true"}},
			"NumericLessThan": {"aws:MultiFactorAuthAge": {"60"}},
		},
	}}
	for _, d := range []*Document{a, b} {
		if d.Version != Version2012 || d.ID != "p1" || !reflect.DeepEqual(d.Statements, want) {
			t.Errorf("parsed %+v, want %+v", d.Statements, want)
		}
	}
	if !bytes.Equal(a.Source(), []byte(short)) {
		t.Error("Source is not the parsed text")
	}
}

func TestPrincipalForms(t *testing.T) {
	d, err := Parse([]byte(stmt(`"Effect": "Allow", "Action": "kms:*", "Resource": "*",
		"Principal": {"AWS": ["123456789012", "arn:azote:sts::123456789012:assumed-role/Ops/alice"], "Service": "compute.azote.internal"}`)))
	if err != nil {
		t.Fatal(err)
	}
	want := &Principals{AWS: []string{"123456789012", "arn:azote:sts::123456789012:assumed-role/Ops/alice"}, Service: []string{"compute.azote.internal"}}
	if got := d.Statements[0].Principal; !reflect.DeepEqual(got, want) {
		t.Errorf("Principal = %+v, want %+v", got, want)
	}
	d, err = Parse([]byte(stmt(`"Effect": "Allow", "Action": "kms:*", "Resource": "*", "Principal": "*"`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Statements[0].Principal; got == nil || !got.All {
		t.Errorf("Principal = %+v, want All", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		text string
		ok   bool
	}{
		{"identity", Identity, stmt(`"Effect": "Allow", "Action": "*", "Resource": "*"`), true},
		{"identity NotResource", Identity, stmt(`"Effect": "Deny", "Action": "*", "NotResource": "arn:azote:kms::123456789012:key/*"`), true},
		{"identity with Principal", Identity, stmt(`"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"`), false},
		{"identity with NotPrincipal", Identity, stmt(`"Effect": "Deny", "NotPrincipal": {"AWS": "123456789012"}, "Action": "*", "Resource": "*"`), false},
		{"identity without Resource", Identity, stmt(`"Effect": "Allow", "Action": "*"`), false},
		{"resource", Resource, stmt(`"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "kms:*", "Resource": "*"`), true},
		{"resource NotPrincipal Deny", Resource, stmt(`"Effect": "Deny", "NotPrincipal": {"AWS": "123456789012"}, "Action": "kms:*", "Resource": "*"`), true},
		{"resource NotPrincipal Allow", Resource, stmt(`"Effect": "Allow", "NotPrincipal": {"AWS": "123456789012"}, "Action": "kms:*", "Resource": "*"`), false},
		{"resource without Principal", Resource, stmt(`"Effect": "Allow", "Action": "kms:*", "Resource": "*"`), false},
		{"resource without Resource", Resource, stmt(`"Effect": "Allow", "Principal": "*", "Action": "kms:*"`), false},
		{"trust", Trust, trustAlice, true},
		{"trust service", Trust, trustService, true},
		{"trust lower-case sts", Trust, stmt(`"Effect": "Allow", "Principal": "*", "Action": ["STS:AssumeRole", "sts:TagSession"]`), true},
		{"trust other action", Trust, stmt(`"Effect": "Allow", "Principal": "*", "Action": ["sts:AssumeRole", "iam:PassRole"]`), false},
		{"trust star action", Trust, stmt(`"Effect": "Allow", "Principal": "*", "Action": "*"`), false},
		{"trust NotAction", Trust, stmt(`"Effect": "Allow", "Principal": "*", "NotAction": "iam:*"`), false},
		{"trust Resource", Trust, stmt(`"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole", "Resource": "*"`), false},
		{"trust NotPrincipal", Trust, stmt(`"Effect": "Deny", "NotPrincipal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"`), false},
		{"trust without Principal", Trust, stmt(`"Effect": "Allow", "Action": "sts:AssumeRole"`), false},
		{"unknown kind", Kind(9), stmt(`"Effect": "Allow", "Action": "*", "Resource": "*"`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse([]byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			err = d.Validate(tc.kind)
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%v) = %v, want ok=%v", tc.kind, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrKind) {
				t.Errorf("error %v does not wrap ErrKind", err)
			}
		})
	}
}

func TestBuiltins(t *testing.T) {
	names := BuiltinNames()
	if want := []string{"AdministratorAccess", "PowerUserAccess", "ReadOnlyAccess", "TenantReadOnlyAccess"}; !slices.Equal(names, want) {
		t.Fatalf("BuiltinNames = %v, want %v", names, want)
	}
	for _, n := range names {
		d, ok := Builtin(n)
		if !ok {
			t.Fatalf("Builtin(%q) missing", n)
		}
		if err := d.Validate(Identity); err != nil {
			t.Errorf("%s: %v", n, err)
		}
		again, _ := Builtin(n)
		if again != d {
			t.Errorf("%s parsed twice", n)
		}
	}
	if _, ok := Builtin("administratoraccess"); ok {
		t.Error("builtin names must match exactly")
	}
}

// allTestPolicies is every policy text used in the tests.
func allTestPolicies() []string {
	var out []string
	for _, n := range BuiltinNames() {
		out = append(out, builtinText[n])
	}
	for _, tc := range evalCases {
		for _, p := range append(slices.Clone(tc.identity), tc.resource...) {
			if p.text != "" && !slices.Contains(out, p.text) {
				out = append(out, p.text)
			}
		}
	}
	return out
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, text := range allTestPolicies() {
		d, err := Parse([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := Parse(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !reflect.DeepEqual(d.Statements, d2.Statements) || d.Version != d2.Version || d.ID != d2.ID {
			t.Errorf("round trip changed the document:\n%s\n%s", text, b)
		}
		b2, _ := json.Marshal(*d2) // the value form marshals the same way
		if !bytes.Equal(b, b2) {
			t.Errorf("marshal is not stable:\n%s\n%s", b, b2)
		}
	}
}

func TestUnmarshalJSON(t *testing.T) {
	var body struct {
		Name   string
		Policy *Document
	}
	in := `{"Name": "p", "Policy": ` + allowCompute + `}`
	if err := json.Unmarshal([]byte(in), &body); err != nil {
		t.Fatal(err)
	}
	r := Evaluate([]Named{{"p", body.Policy}}, nil, &Request{Principal: alice, Action: "compute:RunInstances", Resource: instance})
	if r.Decision != Allow {
		t.Errorf("embedded policy decided %v", r.Decision)
	}
	bad := `{"Name": "p", "Policy": ` + stmt(`"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Foo": {"a:b": "c"}}`) + `}`
	if err := json.Unmarshal([]byte(bad), &body); !errors.Is(err, ErrInvalid) {
		t.Errorf("Unmarshal of a bad policy = %v, want ErrInvalid", err)
	}
}

func TestUnparsedDocumentDenies(t *testing.T) {
	d := &Document{Version: Version2012, Statements: []Statement{{Effect: "Allow", Action: []string{"*"}, Resource: []string{"*"}}}}
	r := Evaluate([]Named{{"hand", d}}, nil, &Request{Principal: alice, Action: "compute:RunInstances", Resource: instance})
	if r.Decision != ExplicitDeny || r.Statement != "hand#unparsed" {
		t.Errorf("hand-built document decided %v by %q", r.Decision, r.Statement)
	}
	if r := Evaluate(nil, nil, nil); r.Decision != ImplicitDeny {
		t.Errorf("nil request decided %v", r.Decision)
	}
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[Decision]string{ImplicitDeny: "ImplicitDeny", Allow: "Allow", ExplicitDeny: "ExplicitDeny", 7: "Decision(?)"} {
		if d.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(d), d.String(), want)
		}
	}
	if Trust.String() != "trust" || Kind(5).String() != "Kind(5)" {
		t.Error("Kind.String")
	}
}

// TestGlob checks the matcher on its own against cases worked by hand.
func TestGlob(t *testing.T) {
	tests := []struct {
		pat, s string
		fold   bool
		want   bool
	}{
		{"*", "", false, true},
		{"*", "anything", false, true},
		{"a*b*c", "abc", false, true},
		{"a*b*c", "axxbyyc", false, true},
		{"a*b*c", "axxbyy", false, false},
		{"a*b", "abab", false, true},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"a?c", "a€c", false, true}, // ? is one character, not one byte
		{"*Describe*", "compute:describeinstances", true, true},
		{"*Describe*", "compute:describeinstances", false, false},
		{"k*", "\u212a", true, true}, // the Kelvin sign folds to k
		{"**a", "ba", false, true},
		{"a", "ab", false, false},
	}
	for _, tc := range tests {
		p, err := compilePattern(tc.pat, patternOpts{wild: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.match(tc.s, tc.fold, nil); got != tc.want {
			t.Errorf("match(%q, %q, fold=%v) = %v, want %v", tc.pat, tc.s, tc.fold, got, tc.want)
		}
	}
}

func TestEvaluateAllocs(t *testing.T) {
	id := named(t, []pol{{"SelfMFA", mfaSelfManage}, {"IP", denyIP}, {"Tags", denyRestrictedTags}, admin})
	res := named(t, []pol{{"Key", keyDenyCompute}})
	req := &Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN, Context: ctx(
		"aws:username", "alice", "aws:multifactorauthpresent", "true", "aws:sourceip", "192.0.2.44",
		"aws:viaawsservice", "false", "aws:currenttime", "2024-02-29T10:00:00Z", "aws:SourceArn", "arn:azote:compute::210987654321:instance/i-1")}
	if r := Evaluate(id, res, req); r.Decision != Allow {
		t.Fatalf("decided %v by %s", r.Decision, r.Statement)
	}
	// The label of the deciding statement is the one allocation.
	if n := testing.AllocsPerRun(100, func() { Evaluate(id, res, req) }); n > 1 {
		t.Errorf("Evaluate (allow) allocates %v times", n)
	}
	deny := *req
	deny.Action = "compute:RunInstances"
	deny.Context = ctx("aws:username", "alice")
	if n := testing.AllocsPerRun(100, func() { Evaluate(id, res, &deny) }); n > 1 {
		t.Errorf("Evaluate (deny) allocates %v times", n)
	}
	none := Request{Principal: alice, Action: "compute:RunInstances", Resource: instance}
	nothing := named(t, []pol{{"Keys", ownKeys}, {"Window", dateWindow}})
	if n := testing.AllocsPerRun(100, func() { Evaluate(nothing, nil, &none) }); n != 0 {
		t.Errorf("Evaluate (implicit deny) allocates %v times", n)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	id := named(b, []pol{{"SelfMFA", mfaSelfManage}, {"IP", denyIP}, {"Tags", denyRestrictedTags}, {"Seg", segments}, {"name", ownKeys}, {name: "PowerUserAccess"}})
	res := named(b, []pol{{"Key", keyDenyCompute}})
	base := ctx("aws:username", "alice", "aws:multifactorauthpresent", "true", "aws:sourceip", "192.0.2.44",
		"aws:viaawsservice", "false", "aws:currenttime", "2024-02-29T10:00:00Z", "aws:securetransport", "true")
	cases := []struct {
		name string
		req  Request
	}{
		{"allow", Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: base}},
		{"explicit-deny", Request{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx("aws:sourceip", "198.51.100.1", "aws:viaawsservice", "false")}},
		{"implicit-deny", Request{Principal: alice, Action: "iam:CreateUser", Resource: bobUser, Context: base}},
		{"resource-policy", Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN, Context: base}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Evaluate(id, res, &c.req)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	data := []byte(mfaSelfManage)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
