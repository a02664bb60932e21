package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
)

// fakeCardMetrics answers on a card's metrics socket with answer (nil:
// accepts and never answers).
func fakeCardMetrics(t *testing.T, path string, answer []byte) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if answer == nil {
				t.Cleanup(func() { c.Close() })
				continue
			}
			c.Write(answer)
			c.Close()
		}
	}()
}

// The cards' counters reach GET /metrics labelled by azoted: a card that
// claims another volume, sends garbage or never answers cannot forge,
// break or stall the output.
func TestCardMetricsRelay(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	good, liar, stuck := fx.volume("good", api.VolumePersistent), fx.volume("liar", api.VolumePersistent), fx.volume("stuck", api.VolumePersistent)
	inst, err := fx.c.RunInstance(ctx, api.RunInstanceRequest{Name: "vm", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	fx.waitState(inst.ID, api.StateRunning)
	fx.attachInStore(inst.ID, good, liar, stuck)
	socks := map[string]string{}
	cards, err := fx.c.instances.CardMetricsSockets()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cards {
		socks[c.Volume] = c.Socket
	}
	m := cardproto.BlkMetrics{Ops: make([]cardproto.OpMetrics, len(cardproto.BlkOps)), ThrottledNs: 1.5e9}
	for i := range m.Ops {
		m.Ops[i].Latency = make([]uint64, len(cardproto.LatencyBuckets)+1)
	}
	m.Ops[1] = cardproto.OpMetrics{Requests: 7, Bytes: 7 * 4096, Latency: make([]uint64, len(cardproto.LatencyBuckets)+1), LatencySumNs: 7e6}
	m.Ops[1].Latency[4], m.Ops[1].Latency[len(cardproto.LatencyBuckets)] = 5, 2
	m.IOPath = "mapped"
	m.Paths = []cardproto.PathMetrics{{Op: "read", Path: "mapped", Requests: 3, Bytes: 3 * 4096}, {Op: "write", Path: "pread", Requests: 7, Bytes: 7 * 4096}}
	answer, _ := json.Marshal(m)
	fakeCardMetrics(t, socks[good.ID], answer)
	fakeCardMetrics(t, socks[liar.ID],
		[]byte("azote_volume_ops_total{volume=\""+good.ID+"\",op=\"write\"} 999999\nazote_volume_ops_total{"))
	fakeCardMetrics(t, socks[stuck.ID], nil)

	var out bytes.Buffer
	start := time.Now()
	if err := fx.c.WriteMetrics(ctx, &out); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a card that never answers held the scrape for %v", d)
	}
	text := out.String()
	line := regexp.MustCompile(`^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*\})? [0-9.e+-]+|[a-z_]+\{.*le="\+Inf"\} [0-9]+)$`)
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if !line.MatchString(l) {
			t.Errorf("malformed line %q", l)
		}
	}
	for _, want := range []string{
		`azote_volume_ops_total{volume="` + good.ID + `",op="write"} 7`,
		`azote_volume_bytes_total{volume="` + good.ID + `",op="write"} 28672`,
		`azote_volume_latency_seconds_bucket{volume="` + good.ID + `",op="write",le="0.001"} 5`,
		`azote_volume_latency_seconds_bucket{volume="` + good.ID + `",op="write",le="+Inf"} 7`,
		`azote_volume_latency_seconds_count{volume="` + good.ID + `",op="write"} 7`,
		`azote_volume_throttled_seconds_total{volume="` + good.ID + `"} 1.5`,
		`azote_volume_io_path_info{volume="` + good.ID + `",path="mapped"} 1`,
		`azote_volume_path_ops_total{volume="` + good.ID + `",op="read",path="mapped"} 3`,
		`azote_volume_path_bytes_total{volume="` + good.ID + `",op="write",path="pread"} 28672`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %q", want)
		}
	}
	for _, bad := range []string{"999999", liar.ID, stuck.ID} {
		if strings.Contains(text, bad) {
			t.Errorf("output holds %q:\n%s", bad, text)
		}
	}
}

// The I/O path and the per-path counters: each family's HELP and TYPE
// once, its samples right after them; a card on O_DIRECT has the info
// sample and no path counters; an entry a card repeats is rendered once,
// so the scrape never holds a duplicate series.
func TestVolumeMetricsIOPaths(t *testing.T) {
	blank := func(io string, paths ...cardproto.PathMetrics) *cardproto.BlkMetrics {
		m := &cardproto.BlkMetrics{Ops: make([]cardproto.OpMetrics, len(cardproto.BlkOps)), IOPath: io, Paths: paths}
		for i := range m.Ops {
			m.Ops[i].Latency = make([]uint64, len(cardproto.LatencyBuckets)+1)
		}
		return m
	}
	var out bytes.Buffer
	writeVolumeMetrics(&out, []volumeMetrics{
		{"vol-a", blank("mapped",
			cardproto.PathMetrics{Op: "write", Path: "pread", Requests: 2, Bytes: 8192},
			cardproto.PathMetrics{Op: "read", Path: "mapped", Requests: 5, Bytes: 20480},
			cardproto.PathMetrics{Op: "write", Path: "pread", Requests: 99, Bytes: 99}, // repeated
		)},
		{"vol-b", blank("direct")},
		{"vol-c", blank("mapped", cardproto.PathMetrics{Op: "read", Path: "pread", Requests: 1, Bytes: 512})},
		{"vol-old", blank("")},
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")

	// family maps a family to its samples, failing on a family declared
	// twice or a sample outside its family.
	family := map[string][]string{}
	cur := ""
	for _, l := range lines {
		if name, ok := strings.CutPrefix(l, "# HELP "); ok {
			name, _, _ = strings.Cut(name, " ")
			if _, dup := family[name]; dup {
				t.Errorf("family %s declared twice", name)
			}
			cur = name
			family[name] = []string{}
			continue
		}
		if strings.HasPrefix(l, "# TYPE ") {
			continue
		}
		name, _, _ := strings.Cut(l, "{")
		if name != cur && !strings.HasPrefix(name, cur+"_") {
			t.Errorf("sample %q outside its family (in %s)", l, cur)
		}
		family[cur] = append(family[cur], l)
	}
	for name, want := range map[string][]string{
		"azote_volume_io_path_info": {
			`azote_volume_io_path_info{volume="vol-a",path="mapped"} 1`,
			`azote_volume_io_path_info{volume="vol-b",path="direct"} 1`,
			`azote_volume_io_path_info{volume="vol-c",path="mapped"} 1`,
		},
		"azote_volume_path_ops_total": {
			`azote_volume_path_ops_total{volume="vol-a",op="read",path="mapped"} 5`,
			`azote_volume_path_ops_total{volume="vol-a",op="write",path="pread"} 2`,
			`azote_volume_path_ops_total{volume="vol-c",op="read",path="pread"} 1`,
		},
		"azote_volume_path_bytes_total": {
			`azote_volume_path_bytes_total{volume="vol-a",op="read",path="mapped"} 20480`,
			`azote_volume_path_bytes_total{volume="vol-a",op="write",path="pread"} 8192`,
			`azote_volume_path_bytes_total{volume="vol-c",op="read",path="pread"} 512`,
		},
	} {
		got, ok := family[name]
		if !ok {
			t.Errorf("no family %s", name)
			continue
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	for _, typ := range []string{"# TYPE azote_volume_io_path_info gauge", "# TYPE azote_volume_path_ops_total counter", "# TYPE azote_volume_path_bytes_total counter"} {
		if !slices.Contains(lines, typ) {
			t.Errorf("missing %q", typ)
		}
	}
}
