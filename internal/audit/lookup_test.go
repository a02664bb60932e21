package audit

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func TestLookupFilter(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	t0 := clock.Now()
	recs := []*Record{
		{UserIdentity: UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::1:user/alice", UserName: "alice", AccessKeyID: "AKIAALICE"},
			EventSource: "ec2.azote.local", EventName: "RunInstances",
			RequestParameters: map[string]any{"imageId": "ami-123"}},
		{UserIdentity: UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::1:user/bob", UserName: "bob", AccessKeyID: "AKIABOB"},
			EventSource: "kms.azote.local", EventName: "Decrypt", ErrorCode: "AccessDenied", ErrorMessage: "denied",
			Resources: []Resource{{ARN: "arn:aws:kms:local-1:1:key/k-1", Type: "AWS::KMS::Key"}}},
		{UserIdentity: UserIdentity{Type: "AssumedRole", ARN: "arn:aws:sts::1:assumed-role/ops/s", AccessKeyID: "ASIAOPS"},
			EventSource: "ec2.azote.local", EventName: "TerminateInstances",
			RequestParameters: map[string]any{"instanceId": "i-42"}},
		{UserIdentity: UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::1:user/alice", UserName: "alice", AccessKeyID: "AKIAALICE"},
			EventSource: "kms.azote.local", EventName: "Decrypt", ErrorCode: "ThrottlingException"},
	}
	for i, r := range recs {
		if err := tr.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
		if i == 1 {
			if err := tr.Rotate(); err != nil { // half in a log, half in the journal
				t.Fatal(err)
			}
		}
	}
	id := func(i int) string { return recs[i].EventID }
	for _, tc := range []struct {
		name string
		f    Filter
		want []int // indexes into recs, newest first
	}{
		{"all", Filter{}, []int{3, 2, 1, 0}},
		{"principal by userName", Filter{Principal: "alice"}, []int{3, 0}},
		{"principal by arn", Filter{Principal: "arn:aws:sts::1:assumed-role/ops/s"}, []int{2}},
		{"principal by access key", Filter{Principal: "AKIABOB"}, []int{1}},
		{"principal not a substring", Filter{Principal: "ali"}, nil},
		{"event name", Filter{EventName: "Decrypt"}, []int{3, 1}},
		{"resource in requestParameters", Filter{Resource: "i-42"}, []int{2}},
		{"resource in resources", Filter{Resource: "key/k-1"}, []int{1}},
		{"error code", Filter{ErrorCode: "AccessDenied"}, []int{1}},
		{"only errors", Filter{OnlyErrors: true}, []int{3, 1}},
		{"start", Filter{Start: t0.Add(2 * time.Minute)}, []int{3, 2}},
		{"end", Filter{End: t0.Add(time.Minute)}, []int{1, 0}},
		{"start and end", Filter{Start: t0.Add(time.Minute), End: t0.Add(2 * time.Minute)}, []int{2, 1}},
		{"limit", Filter{Limit: 2}, []int{3, 2}},
		{"combined", Filter{Principal: "alice", EventName: "Decrypt", OnlyErrors: true}, []int{3}},
	} {
		for _, src := range []struct {
			name   string
			lookup func(Filter) ([]Record, error)
		}{
			{"trail", tr.Lookup},
			{"dir", func(f Filter) ([]Record, error) { return Lookup(dir, f) }},
		} {
			got, err := src.lookup(tc.f)
			if err != nil {
				t.Fatalf("%s/%s: %v", tc.name, src.name, err)
			}
			var gotIDs, wantIDs []string
			for _, r := range got {
				gotIDs = append(gotIDs, r.EventID)
			}
			for _, i := range tc.want {
				wantIDs = append(wantIDs, id(i))
			}
			if !reflect.DeepEqual(gotIDs, wantIDs) {
				t.Errorf("%s/%s: got %v, want %v", tc.name, src.name, gotIDs, wantIDs)
			}
		}
	}
}

// TestLookupSameTime: records with equal event times come back in reverse
// write order, across a log and the journal.
func TestLookupSameTime(t *testing.T) {
	clock := newClock()
	tr, _ := newTrail(t, clock)
	ids := appendN(t, tr, nil, 0, 3)
	if err := tr.Rotate(); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, appendN(t, tr, nil, 3, 3)...)
	got, err := tr.Lookup(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r.EventID != ids[len(ids)-1-i] {
			t.Fatalf("position %d: %s, want %s", i, r.EventID, ids[len(ids)-1-i])
		}
	}
}
