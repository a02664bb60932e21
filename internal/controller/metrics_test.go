package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	family := families(t, lines)
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

// families maps each family of a scrape to its samples, failing on a
// family declared twice, a family without its TYPE right after its HELP,
// or a sample outside its family.
func families(t *testing.T, lines []string) map[string][]string {
	t.Helper()
	family := map[string][]string{}
	cur := ""
	for i, l := range lines {
		if name, ok := strings.CutPrefix(l, "# HELP "); ok {
			name, _, _ = strings.Cut(name, " ")
			if _, dup := family[name]; dup {
				t.Errorf("family %s declared twice", name)
			}
			if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "# TYPE "+name+" ") {
				t.Errorf("family %s: no TYPE after its HELP", name)
			}
			cur = name
			family[name] = []string{}
			continue
		}
		if strings.HasPrefix(l, "# TYPE ") {
			continue
		}
		name := l
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			name = l[:i]
		}
		if name != cur && !strings.HasPrefix(name, cur+"_") {
			t.Errorf("sample %q outside its family (in %s)", l, cur)
		}
		family[cur] = append(family[cur], l)
	}
	return family
}

// The interfaces' families: each declared once with its type, its
// samples together, labelled with the interface and the instance azoted
// knows the card to serve, every reason of cardproto.NetDrops rendered.
func TestInterfaceMetrics(t *testing.T) {
	a := &cardproto.NetMetrics{TxPackets: 10, TxBytes: 1000, TxSealed: 7, RxPackets: 5, RxBytes: 600,
		ARPAnswered: 2, ARPUnanswered: 1, Drops: make([]uint64, len(cardproto.NetDrops)), ConntrackEntries: 3, ConntrackAllowance: 65533}
	a.Drops[3] = 1 // spoof
	a.Metadata = cardproto.NetMetadataMetrics{Requests: []uint64{9, 1, 2, 3, 4, 0, 5}, Unavailable: 0, Dropped: 6,
		Refused: 7, Resets: 8, Retransmits: 11, Connections: 2}
	b := &cardproto.NetMetrics{RxPackets: 1, RxBytes: 98, Drops: make([]uint64, len(cardproto.NetDrops)), ConntrackAllowance: 65536}
	b.Drops[0], b.Drops[4] = 4, 2 // security_group, decrypt
	var out bytes.Buffer
	writeInterfaceMetrics(&out, []interfaceMetrics{{"eni-a", "i-1", a}, {"eni-b", "i-2", b}})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	family := families(t, lines)
	la, lb := `interface="eni-a",instance="i-1"`, `interface="eni-b",instance="i-2"`
	drops := func(l string, m *cardproto.NetMetrics) []string {
		var out []string
		for i, r := range cardproto.NetDrops {
			out = append(out, fmt.Sprintf(`azote_interface_drops_total{%s,reason="%s"} %d`, l, r, m.Drops[i]))
		}
		return out
	}
	for name, want := range map[string][]string{
		"azote_interface_packets_total": {
			`azote_interface_packets_total{` + la + `,direction="tx"} 10`,
			`azote_interface_packets_total{` + la + `,direction="rx"} 5`,
			`azote_interface_packets_total{` + lb + `,direction="tx"} 0`,
			`azote_interface_packets_total{` + lb + `,direction="rx"} 1`,
		},
		"azote_interface_bytes_total": {
			`azote_interface_bytes_total{` + la + `,direction="tx"} 1000`,
			`azote_interface_bytes_total{` + la + `,direction="rx"} 600`,
			`azote_interface_bytes_total{` + lb + `,direction="tx"} 0`,
			`azote_interface_bytes_total{` + lb + `,direction="rx"} 98`,
		},
		"azote_interface_sealed_packets_total": {
			`azote_interface_sealed_packets_total{` + la + `} 7`,
			`azote_interface_sealed_packets_total{` + lb + `} 0`,
		},
		"azote_interface_drops_total": append(drops(la, a), drops(lb, b)...),
		"azote_interface_arp_requests_total": {
			`azote_interface_arp_requests_total{` + la + `,result="answered"} 2`,
			`azote_interface_arp_requests_total{` + la + `,result="unanswered"} 1`,
			`azote_interface_arp_requests_total{` + lb + `,result="answered"} 0`,
			`azote_interface_arp_requests_total{` + lb + `,result="unanswered"} 0`,
		},
		"azote_interface_conntrack_entries": {
			`azote_interface_conntrack_entries{` + la + `} 3`,
			`azote_interface_conntrack_entries{` + lb + `} 0`,
		},
		"azote_interface_conntrack_allowance_available": {
			`azote_interface_conntrack_allowance_available{` + la + `} 65533`,
			`azote_interface_conntrack_allowance_available{` + lb + `} 65536`,
		},
		// b's card has no metadata service: no requests rendered for it.
		"azote_interface_metadata_requests_total": {
			`azote_interface_metadata_requests_total{` + la + `,outcome="ok"} 9`,
			`azote_interface_metadata_requests_total{` + la + `,outcome="bad_request"} 1`,
			`azote_interface_metadata_requests_total{` + la + `,outcome="unauthorized"} 2`,
			`azote_interface_metadata_requests_total{` + la + `,outcome="forbidden"} 3`,
			`azote_interface_metadata_requests_total{` + la + `,outcome="not_found"} 4`,
			`azote_interface_metadata_requests_total{` + la + `,outcome="method_not_allowed"} 0`,
			`azote_interface_metadata_requests_total{` + la + `,outcome="throttled"} 5`,
		},
		"azote_interface_metadata_dropped_frames_total": {
			`azote_interface_metadata_dropped_frames_total{` + la + `,reason="unavailable"} 0`,
			`azote_interface_metadata_dropped_frames_total{` + la + `,reason="invalid"} 6`,
			`azote_interface_metadata_dropped_frames_total{` + lb + `,reason="unavailable"} 0`,
			`azote_interface_metadata_dropped_frames_total{` + lb + `,reason="invalid"} 0`,
		},
		"azote_interface_metadata_tcp_events_total": {
			`azote_interface_metadata_tcp_events_total{` + la + `,event="refused"} 7`,
			`azote_interface_metadata_tcp_events_total{` + la + `,event="reset"} 8`,
			`azote_interface_metadata_tcp_events_total{` + la + `,event="retransmit"} 11`,
			`azote_interface_metadata_tcp_events_total{` + lb + `,event="refused"} 0`,
			`azote_interface_metadata_tcp_events_total{` + lb + `,event="reset"} 0`,
			`azote_interface_metadata_tcp_events_total{` + lb + `,event="retransmit"} 0`,
		},
		"azote_interface_metadata_connections": {
			`azote_interface_metadata_connections{` + la + `} 2`,
			`azote_interface_metadata_connections{` + lb + `} 0`,
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
	if len(family) != 11 {
		t.Errorf("%d families, want 11", len(family))
	}
	for _, l := range []string{`azote_interface_drops_total{` + la + `,reason="spoof"} 1`, `azote_interface_drops_total{` + lb + `,reason="security_group"} 4`,
		`azote_interface_drops_total{` + lb + `,reason="decrypt"} 2`} {
		if !slices.Contains(lines, l) {
			t.Errorf("missing %q", l)
		}
	}
	for _, typ := range []string{"# TYPE azote_interface_packets_total counter", "# TYPE azote_interface_drops_total counter",
		"# TYPE azote_interface_conntrack_entries gauge", "# TYPE azote_interface_conntrack_allowance_available gauge"} {
		if !slices.Contains(lines, typ) {
			t.Errorf("missing %q", typ)
		}
	}
}
