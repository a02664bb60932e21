package controller

import (
	"flag"
	"reflect"
	"testing"

	"github.com/azote/azote/internal/gateway"
)

// The defaults are written once: the flags show DefaultConfig, parsing no
// flag gives it, and a zero Config (an embedder's, a test's) is filled
// from it field by field.
func TestDefaultsWrittenOnce(t *testing.T) {
	def := DefaultConfig()
	got, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, def) {
		t.Errorf("no flags give\n%+v\nwant DefaultConfig\n%+v", got, def)
	}
	// Every flag's shown default is DefaultConfig's value.
	var names, endpoints string
	cfg := DefaultConfig()
	fs := flags(&cfg, &names, &endpoints)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if err := f.Value.Set(f.DefValue); err != nil && f.DefValue != "" {
			t.Errorf("--%s: its shown default %q does not parse: %v", f.Name, f.DefValue, err)
		}
	})
	if !reflect.DeepEqual(cfg, def) {
		t.Errorf("setting every flag to its shown default gives\n%+v\nwant\n%+v", cfg, def)
	}
	if n < 20 {
		t.Errorf("%d flags visited", n)
	}

	// A zero Config gets every default New fills (not the ones where zero
	// means something: no HTTPS listener, the packages' own periods and
	// limits; nor the paths a caller must choose).
	zero := Config{StateDir: "/s", Socket: "/s.sock"}.withDefaults()
	want := def
	want.StateDir, want.Socket, want.Listen = "/s", "/s.sock", ""
	want.AuditFileAge, want.AuditDigestEvery, want.APILimits = 0, 0, gateway.Limits{}
	if !reflect.DeepEqual(zero, want) {
		t.Errorf("a zero Config with defaults is\n%+v\nwant\n%+v", zero, want)
	}
	if zero.BlobQuota != 16<<30 || zero.LogLimit != 1<<20 || zero.VolumeRetention.Hours() != 24 {
		t.Errorf("defaults: blob quota %d, log limit %d, retention %v", zero.BlobQuota, zero.LogLimit, zero.VolumeRetention)
	}
}
