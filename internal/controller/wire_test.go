package controller

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/hostinfo"
)

// fill sets every field of the struct v points to a non-zero value.
func fill(v any) {
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("s" + rv.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Bool:
			f.SetBool(true)
		}
	}
}

// TestWireConversions checks that the API views azoted makes of hostinfo
// and of the agent's report carry every field, under the same JSON name:
// a field added inside azoted and not converted fails here.
func TestWireConversions(t *testing.T) {
	var h hostinfo.Info
	fill(&h)
	var r agent.Report
	fill(&r)
	for _, tc := range []struct {
		name      string
		from, got any
	}{
		{"hostinfo.Info", h, hostInfo(h, "qemu", "kvm")},
		{"agent.Report", r, agentReport(r)},
	} {
		var from, got map[string]any
		raw, _ := json.Marshal(tc.from)
		json.Unmarshal(raw, &from)
		raw, _ = json.Marshal(tc.got)
		json.Unmarshal(raw, &got)
		for k, v := range from {
			if got[k] != v {
				t.Errorf("%s field %q = %v: its API view has %v", tc.name, k, v, got[k])
			}
		}
	}
}
