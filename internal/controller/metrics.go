package controller

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/azote/azote/internal/api"
)

// WriteMetrics implements api.Backend: instance counts by state, volume
// counts, and each running card's per-volume counters (ops, bytes, latency
// histogram, errors, throttled time), which the card itself keeps.
func (c *Controller) WriteMetrics(ctx context.Context, w io.Writer) error {
	recs, err := c.allInstances()
	if err != nil {
		return err
	}
	states := map[string]int{}
	for _, r := range recs {
		states[r.State]++
	}
	fmt.Fprintln(w, "# HELP azote_instances Instances by state.")
	fmt.Fprintln(w, "# TYPE azote_instances gauge")
	for _, s := range []string{api.StatePending, api.StateRunning, api.StateStopping, api.StateStopped, api.StateShuttingDown, api.StateTerminated, api.StateFailed} {
		fmt.Fprintf(w, "azote_instances{state=%q} %d\n", s, states[s])
	}
	vols, err := c.ListVolumes(ctx)
	if err != nil {
		return err
	}
	vstates := map[string]int{}
	for _, v := range vols {
		vstates[v.State]++
	}
	fmt.Fprintln(w, "# HELP azote_volumes Volumes by state.")
	fmt.Fprintln(w, "# TYPE azote_volumes gauge")
	for _, s := range []string{api.VolumeAvailable, api.VolumeInUse, api.VolumeDeleted} {
		fmt.Fprintf(w, "azote_volumes{state=%q} %d\n", s, vstates[s])
	}
	if c.trail != nil {
		st := c.trail.Stats()
		for _, m := range []struct {
			name, help, typ string
			v               float64
		}{
			{"azote_audit_records_total", "Audit records made durable.", "counter", float64(st.Records)},
			{"azote_audit_batches_total", "Group commits (one write and one fdatasync each).", "counter", float64(st.Batches)},
			{"azote_audit_fsync_seconds_total", "Time spent in fdatasync of the audit journal.", "counter", st.FsyncTime.Seconds()},
			{"azote_audit_bytes_total", "Journal bytes written.", "counter", float64(st.Bytes)},
			{"azote_audit_log_files_total", "Log files finished.", "counter", float64(st.LogFiles)},
			{"azote_audit_digests_total", "Signed digests written.", "counter", float64(st.Digests)},
			{"azote_audit_write_errors_total", "Failed journal writes (each stops the trail and every call).", "counter", float64(st.WriteErrors)},
		} {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", m.name, m.help, m.name, m.typ, m.name, m.v)
		}
	}
	var socks []string
	for _, r := range recs {
		if r.Handle == nil {
			continue
		}
		for _, v := range r.Volumes {
			socks = append(socks, c.cardMetricsSocket(r.ID, v.VolumeID))
		}
	}
	sort.Strings(socks)
	// Every card writes all families; the text format wants each family's
	// samples together, so the cards' lines are regrouped by family.
	byFamily := map[string][]string{}
	for _, s := range socks {
		conn, err := net.DialTimeout("unix", s, time.Second)
		if err != nil {
			continue // a card restarting; its counters return with it
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		sc := bufio.NewScanner(io.LimitReader(conn, 1<<20))
		for sc.Scan() {
			line := sc.Text()
			name, _, _ := strings.Cut(line, "{")
			fam := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			byFamily[fam] = append(byFamily[fam], line)
		}
		conn.Close()
	}
	for _, f := range []struct{ name, typ, help string }{
		{"azote_volume_ops_total", "counter", "Requests served per volume and operation."},
		{"azote_volume_bytes_total", "counter", "Bytes moved per volume and operation."},
		{"azote_volume_errors_total", "counter", "Requests answered with an error status."},
		{"azote_volume_latency_seconds", "histogram", "Time to serve a request."},
		{"azote_volume_throttled_seconds_total", "counter", "Time requests waited for the volume's QoS budget."},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		for _, line := range byFamily[f.name] {
			fmt.Fprintln(w, line)
		}
	}
	return nil
}
