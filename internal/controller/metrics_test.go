package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"regexp"
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
