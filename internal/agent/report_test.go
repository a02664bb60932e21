package agent

import (
	"strings"
	"testing"
)

func TestReportRoundTrip(t *testing.T) {
	in := Report{Event: EventReady, Instance: "i-0123456789abcdef", InitMs: 812, ReadyMs: 860,
		VCPUs: 2, MemTotalKiB: 480000, MemRAMKiB: 523700, Modules: 9}
	line := in.Format()
	out, err := Parse("[    1.234] random kernel noise " + line + "\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
	e := Report{Event: EventError, Message: "load virtio_blk:\n file exists"}
	out, err = Parse(e.Format())
	if err != nil || out.Message != "load virtio_blk:  file exists" {
		t.Fatalf("message: %+v %v", out, err)
	}
}

func TestParseRejects(t *testing.T) {
	for name, line := range map[string]string{
		"no prefix":    "event=ready vcpus=2",
		"no event":     Prefix + "vcpus=2",
		"negative":     Prefix + "event=ready vcpus=-1",
		"not a number": Prefix + "event=ready mem_total_kib=lots",
		"no equals":    Prefix + "event=ready vcpus",
		"huge":         Prefix + "event=ready vcpus=99999999999999999",
		"too long":     Prefix + "event=ready msg=" + strings.Repeat("x", MaxLineLen),
	} {
		if r, err := Parse(line); err == nil {
			t.Errorf("%s: %q parsed as %+v", name, line, r)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Report{Event: EventReady, VCPUs: 1, InitMs: 5}.Format())
	f.Add(Prefix + "event=error msg=x y z")
	f.Add("garbage " + Prefix)
	f.Fuzz(func(t *testing.T, line string) {
		r, err := Parse(line)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip of its numeric fields.
		r2, err := Parse(r.Format())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", r.Format(), err)
		}
		if r2.VCPUs != r.VCPUs || r2.ReadyMs != r.ReadyMs || r2.MemTotalKiB != r.MemTotalKiB {
			t.Fatalf("round trip changed %+v to %+v", r, r2)
		}
	})
}
