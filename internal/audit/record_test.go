package audit

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"testing"
	"time"
)

func keysOf(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func TestRecordJSONNames(t *testing.T) {
	r := Record{
		EventVersion: EventVersion,
		UserIdentity: UserIdentity{
			Type: "AssumedRole", PrincipalID: "AROA:s", ARN: "arn:aws:sts::1:assumed-role/r/s",
			AccountID: "1", AccessKeyID: "ASIA1", UserName: "u", InvokedBy: "azote.local",
			SessionContext: &SessionContext{
				Attributes:    SessionAttributes{CreationDate: time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600)), MFAAuthenticated: true},
				SessionIssuer: &SessionIssuer{Type: "Role", PrincipalID: "AROA", ARN: "arn:aws:iam::1:role/r", AccountID: "1", UserName: "r"},
			},
		},
		EventTime:           time.Date(2025, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("y", -7200)),
		EventSource:         "kms.azote.local",
		EventName:           "Decrypt",
		AWSRegion:           "local-1",
		SourceIPAddress:     "192.0.2.1",
		UserAgent:           "aws-sdk-go-v2",
		ErrorCode:           "AccessDenied",
		ErrorMessage:        "no",
		RequestParameters:   map[string]any{"keyId": "k"},
		ResponseElements:    map[string]any{"ok": true},
		AdditionalEventData: map[string]any{"x": 1},
		RequestID:           "rid",
		EventID:             "eid",
		ReadOnly:            true,
		Resources:           []Resource{{ARN: "arn:aws:kms:local-1:1:key/k", AccountID: "1", Type: "AWS::KMS::Key"}},
		EventType:           "AwsApiCall",
		ManagementEvent:     true,
		RecipientAccountID:  "1",
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"additionalEventData", "awsRegion", "errorCode", "errorMessage", "eventID", "eventName",
		"eventSource", "eventTime", "eventType", "eventVersion", "managementEvent", "readOnly",
		"recipientAccountId", "requestID", "requestParameters", "resources", "responseElements",
		"sourceIPAddress", "userAgent", "userIdentity"}
	if got := keysOf(m); !reflect.DeepEqual(got, want) {
		t.Errorf("record keys\n got %v\nwant %v", got, want)
	}
	if m["eventTime"] != "2025-01-02T05:04:05Z" {
		t.Errorf("eventTime = %v, want UTC whole seconds", m["eventTime"])
	}
	ui := m["userIdentity"].(map[string]any)
	wantUI := []string{"accessKeyId", "accountId", "arn", "invokedBy", "principalId", "sessionContext", "type", "userName"}
	if got := keysOf(ui); !reflect.DeepEqual(got, wantUI) {
		t.Errorf("userIdentity keys\n got %v\nwant %v", got, wantUI)
	}
	sc := ui["sessionContext"].(map[string]any)
	if got := keysOf(sc); !reflect.DeepEqual(got, []string{"attributes", "sessionIssuer"}) {
		t.Errorf("sessionContext keys %v", got)
	}
	attrs := sc["attributes"].(map[string]any)
	if attrs["mfaAuthenticated"] != "true" || attrs["creationDate"] != "2025-01-02T02:04:05Z" {
		t.Errorf("attributes = %v", attrs)
	}
	if got := keysOf(sc["sessionIssuer"].(map[string]any)); !reflect.DeepEqual(got, []string{"accountId", "arn", "principalId", "type", "userName"}) {
		t.Errorf("sessionIssuer keys %v", got)
	}
	if r.UserIdentity.SessionContext.Attributes.CreationDate.Nanosecond() != 600 {
		t.Error("MarshalJSON changed the caller's session context")
	}

	// A successful call omits the error fields and the empty maps.
	ok := Record{EventSource: "s", EventName: "n", EventID: "e", EventTime: time.Unix(0, 0)}
	b, _ = json.Marshal(ok)
	m = nil
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"errorCode", "errorMessage", "requestParameters", "responseElements", "additionalEventData", "resources"} {
		if _, present := m[k]; present {
			t.Errorf("%s present in a record without it", k)
		}
	}
	if !reflect.DeepEqual(keysOf(m["userIdentity"].(map[string]any)), []string{"type"}) {
		t.Errorf("empty userIdentity = %v", m["userIdentity"])
	}
}

func TestParseRecord(t *testing.T) {
	good := `{"eventVersion":"1.08","userIdentity":{"type":"Root"},"eventTime":"2025-01-01T00:00:00Z","eventSource":"s","eventName":"n","awsRegion":"r","sourceIPAddress":"","userAgent":"","requestParameters":{"big":12345678901234567890},"requestID":"","eventID":"e","readOnly":false,"eventType":"","managementEvent":false,"recipientAccountId":""}`
	r, err := parseRecord([]byte(good))
	if err != nil {
		t.Fatalf("good record: %v", err)
	}
	if n, ok := r.RequestParameters["big"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("big integer came back as %#v", r.RequestParameters["big"])
	}
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"null", "null"},
		{"array", `[{"eventID":"e"}]`},
		{"string", `"x"`},
		{"no eventID", `{"eventTime":"2025-01-01T00:00:00Z"}`},
		{"no eventTime", `{"eventID":"e"}`},
		{"bad time", `{"eventID":"e","eventTime":"yesterday"}`},
		{"trailing", good + `{}`},
		{"trailing brace", good + `}`},
		{"truncated", good[:len(good)-5]},
		{"wrong type", `{"eventID":1,"eventTime":"2025-01-01T00:00:00Z"}`},
	} {
		if _, err := parseRecord([]byte(tc.in)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", tc.name, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		key    string
		hidden bool
	}{
		{"SecretAccessKey", true}, {"password", true}, {"NewPassword", true}, {"SessionToken", true},
		{"Plaintext", true}, {"private_key", true}, {"PrivateKey", true}, {"key material", true},
		{"KeyMaterial", true}, {"tokenCode", true}, {"mfa-code", true}, {"Authorization", true},
		{"Base32StringSeed", true}, {"URI", true}, {"QRCodeTerminal", true},
		{"instanceId", false}, {"KeyId", false}, {"keySpec", false}, {"userName", false},
		{"encryptionContext", false}, {"description", false},
		{"a_very_long_key_name_that_goes_on_and_on_beyond_sixty_four_bytes_secret", true},
	} {
		in := map[string]any{tc.key: "v"}
		out := Redact(in)
		if got := out[tc.key] == Hidden; got != tc.hidden {
			t.Errorf("%q hidden = %v, want %v", tc.key, got, tc.hidden)
		}
		if needsRedaction(in) != tc.hidden {
			t.Errorf("needsRedaction(%q) = %v, want %v", tc.key, !tc.hidden, tc.hidden)
		}
		if in[tc.key] != "v" {
			t.Errorf("Redact changed its input for %q", tc.key)
		}
	}

	in := map[string]any{
		"outer":   map[string]any{"password": "p", "keep": "k"},
		"list":    []any{map[string]any{"secretValue": 1}, "plain"},
		"maps":    []map[string]any{{"authorization": "Bearer x"}},
		"strings": []string{"a"},
		"Secret":  map[string]any{"whole": "subtree"},
	}
	out := Redact(in)
	want := map[string]any{
		"outer":   map[string]any{"password": Hidden, "keep": "k"},
		"list":    []any{map[string]any{"secretValue": Hidden}, "plain"},
		"maps":    []map[string]any{{"authorization": Hidden}},
		"strings": []string{"a"},
		"Secret":  Hidden,
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("Redact nested\n got %v\nwant %v", out, want)
	}
	out["strings"].([]string)[0] = "changed"
	if in["strings"].([]string)[0] != "a" || in["outer"].(map[string]any)["password"] != "p" {
		t.Error("Redact shares mutable state with its input")
	}
	if !needsRedaction(in) || needsRedaction(map[string]any{"x": []any{map[string]any{"y": 1}}}) {
		t.Error("needsRedaction disagrees with Redact on nested input")
	}
	if Redact(nil) != nil {
		t.Error("Redact(nil) != nil")
	}
}

func TestAppendRedactsAndFills(t *testing.T) {
	clock := newClock()
	tr, _ := newTrail(t, clock)
	params := map[string]any{"userName": "alice", "password": "hunter2", "nested": map[string]any{"SessionToken": "tok"}}
	r := &Record{EventSource: "iam.azote.local", EventName: "CreateLoginProfile", RequestParameters: params,
		AdditionalEventData: map[string]any{"MFACode": "123456"}}
	if err := tr.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if params["password"] != "hunter2" {
		t.Error("Append changed the caller's map")
	}
	got, err := tr.Lookup(Filter{})
	if err != nil || len(got) != 1 {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	g := got[0]
	if g.RequestParameters["password"] != Hidden || g.RequestParameters["userName"] != "alice" ||
		g.RequestParameters["nested"].(map[string]any)["SessionToken"] != Hidden ||
		g.AdditionalEventData["MFACode"] != Hidden {
		t.Errorf("stored record not redacted: %+v", g)
	}
	if g.EventVersion != "1.08" || g.RecipientAccountID != "111122223333" || g.AWSRegion != "local-1" ||
		!g.EventTime.Equal(clock.Now()) || g.EventID != r.EventID {
		t.Errorf("defaults not filled: %+v", g)
	}
	if !uuidRE.MatchString(g.EventID) {
		t.Errorf("eventID %q is not a version 4 UUID", g.EventID)
	}
	for _, bad := range []*Record{nil, {EventSource: "s"}, {EventName: "n"}} {
		if err := tr.Append(context.Background(), bad); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("Append(%v) = %v, want ErrInvalidRecord", bad, err)
		}
	}
	nan := &Record{EventSource: "s", EventName: "n", RequestParameters: map[string]any{"c": make(chan int)}}
	if err := tr.Append(context.Background(), nan); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("unencodable record: %v", err)
	}
}
