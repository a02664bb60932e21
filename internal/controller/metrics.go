package controller

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
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
	fmt.Fprintln(w, "# HELP azote_volume_ops_total Requests served per volume and operation.")
	fmt.Fprintln(w, "# TYPE azote_volume_ops_total counter")
	fmt.Fprintln(w, "# TYPE azote_volume_bytes_total counter")
	fmt.Fprintln(w, "# TYPE azote_volume_errors_total counter")
	fmt.Fprintln(w, "# TYPE azote_volume_latency_seconds histogram")
	fmt.Fprintln(w, "# TYPE azote_volume_throttled_seconds_total counter")
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
	for _, s := range socks {
		conn, err := net.DialTimeout("unix", s, time.Second)
		if err != nil {
			continue // a card restarting; its counters return with it
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		io.Copy(w, io.LimitReader(conn, 1<<20))
		conn.Close()
	}
	return nil
}
