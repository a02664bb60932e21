package controller

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/cards/cardproto"
)

// WriteMetrics implements gateway.Backend: instance counts by state, volume
// counts, each running blk card's per-volume counters (ops, bytes, latency
// histogram, errors, throttled time) and each running net card's
// per-interface counters (packets, bytes, drops by reason, connection
// table), which the cards themselves keep.
func (c *Controller) WriteMetrics(ctx context.Context, w io.Writer) error {
	insts, err := c.instances.List(ctx)
	if err != nil {
		return err
	}
	states := map[string]int{}
	for _, r := range insts {
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
		unavailable := 0.0
		if c.trail.Err() != nil {
			unavailable = 1
		}
		for _, m := range []struct {
			name, help, typ string
			v               float64
		}{
			{"azote_audit_records_total", "Audit records made durable.", "counter", float64(st.Records)},
			{"azote_audit_batches_total", "Group commits (one write and one fdatasync each).", "counter", float64(st.Batches)},
			{"azote_audit_fsync_seconds_total", "Time spent in fdatasync of the audit journal and of its signed head.", "counter", st.FsyncTime.Seconds()},
			{"azote_audit_tampered_journals_total", "Journals start-up kept aside unsigned because they did not match their signed head.", "counter", float64(st.Tampered)},
			{"azote_audit_journal_restores_total", "Journals written back at rotation because someone else changed the file.", "counter", float64(c.trail.JournalRestores())},
			{"azote_audit_bytes_total", "Journal bytes written.", "counter", float64(st.Bytes)},
			{"azote_audit_log_files_total", "Log files finished.", "counter", float64(st.LogFiles)},
			{"azote_audit_digests_total", "Signed digests written.", "counter", float64(st.Digests)},
			{"azote_audit_write_errors_total", "Failed journal writes (each stops every call until the trail recovers).", "counter", float64(st.WriteErrors)},
			{"azote_audit_recoveries_total", "Times the trail wrote again after a failed journal write.", "counter", float64(st.Recoveries)},
			{"azote_audit_unavailable", "1 while the trail cannot write and every call is refused.", "gauge", unavailable},
		} {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", m.name, m.help, m.name, m.typ, m.name, m.v)
		}
	}
	vcards, err := c.instances.CardMetricsSockets()
	if err != nil {
		return err
	}
	ncards, err := c.instances.NetMetricsSockets()
	if err != nil {
		return err
	}
	// Cards answer at once; one that does not (restarting, or stuck) is
	// left out rather than holding up the scrape: all are asked together,
	// with one deadline.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	vsnaps := make([]*cardproto.BlkMetrics, len(vcards))
	nsnaps := make([]*cardproto.NetMetrics, len(ncards))
	var wg sync.WaitGroup
	for i, cd := range vcards {
		wg.Go(func() {
			m, err := cardhost.ScrapeBlk(ctx, cd.Socket)
			if err != nil {
				c.log.Debug("card metrics", "volume", cd.Volume, "err", err)
				return
			}
			vsnaps[i] = &m
		})
	}
	for i, cd := range ncards {
		wg.Go(func() {
			m, err := cardhost.ScrapeNet(ctx, cd.Socket)
			if err != nil {
				c.log.Debug("card metrics", "instance", cd.Instance, "interface", cd.Interface, "err", err)
				return
			}
			nsnaps[i] = &m
		})
	}
	wg.Wait()
	var volumes []volumeMetrics
	for i, cd := range vcards {
		if vsnaps[i] != nil {
			volumes = append(volumes, volumeMetrics{cd.Volume, vsnaps[i]})
		}
	}
	writeVolumeMetrics(w, volumes)
	var ifaces []interfaceMetrics
	for i, cd := range ncards {
		if nsnaps[i] != nil {
			ifaces = append(ifaces, interfaceMetrics{cd.Interface, cd.Instance, nsnaps[i]})
		}
	}
	writeInterfaceMetrics(w, ifaces)
	return nil
}

// volumeMetrics is one card's counters and the volume azoted knows the
// card to serve.
type volumeMetrics struct {
	volume string
	m      *cardproto.BlkMetrics
}

// writeVolumeMetrics renders the cards' counters, each family's samples
// together, labelled by azoted.
func writeVolumeMetrics(w io.Writer, vols []volumeMetrics) {
	family := func(name, typ, help string, sample func(volume string, m *cardproto.BlkMetrics)) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, v := range vols {
			sample(v.volume, v.m)
		}
	}
	counter := func(name, help string, get func(o cardproto.OpMetrics) uint64) {
		family(name, "counter", help, func(vol string, m *cardproto.BlkMetrics) {
			for i, o := range m.Ops {
				fmt.Fprintf(w, "%s{volume=%q,op=%q} %d\n", name, vol, cardproto.BlkOps[i], get(o))
			}
		})
	}
	counter("azote_volume_ops_total", "Requests served per volume and operation.", func(o cardproto.OpMetrics) uint64 { return o.Requests })
	counter("azote_volume_bytes_total", "Bytes moved per volume and operation.", func(o cardproto.OpMetrics) uint64 { return o.Bytes })
	counter("azote_volume_errors_total", "Requests answered with an error status.", func(o cardproto.OpMetrics) uint64 { return o.Errors })
	const lat = "azote_volume_latency_seconds"
	family(lat, "histogram", "Time to serve a request (without its wait for the QoS budget).", func(vol string, m *cardproto.BlkMetrics) {
		for i, o := range m.Ops {
			l := fmt.Sprintf("volume=%q,op=%q", vol, cardproto.BlkOps[i])
			var cum uint64
			for j, ub := range cardproto.LatencyBuckets {
				cum += o.Latency[j]
				fmt.Fprintf(w, "%s_bucket{%s,le=\"%g\"} %d\n", lat, l, ub, cum)
			}
			cum += o.Latency[len(cardproto.LatencyBuckets)]
			fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", lat, l, cum)
			fmt.Fprintf(w, "%s_sum{%s} %g\n", lat, l, float64(o.LatencySumNs)/1e9)
			fmt.Fprintf(w, "%s_count{%s} %d\n", lat, l, cum)
		}
	})
	family("azote_volume_throttled_seconds_total", "counter", "Time requests waited for the volume's QoS budget (summed over requests).", func(vol string, m *cardproto.BlkMetrics) {
		fmt.Fprintf(w, "azote_volume_throttled_seconds_total{volume=%q} %g\n", vol, float64(m.ThrottledNs)/1e9)
	})
	family("azote_volume_io_path_info", "gauge", "How the card reaches the volume's file: direct (O_DIRECT), mapped (page cache; each transfer through the mapping or pread/pwrite, whichever it measures cheaper) or pread (page cache, system calls only).", func(vol string, m *cardproto.BlkMetrics) {
		if m.IOPath != "" { // a card from before the field says nothing
			fmt.Fprintf(w, "azote_volume_io_path_info{volume=%q,path=%q} 1\n", vol, m.IOPath)
		}
	})
	// The per-path counters are rendered in this fixed order and at most
	// once per direction and path, so a card that repeats an entry cannot
	// make the scrape hold a duplicate series.
	pathCounter := func(name, help string, get func(p cardproto.PathMetrics) uint64) {
		family(name, "counter", help, func(vol string, m *cardproto.BlkMetrics) {
			for _, op := range [...]string{"read", "write"} {
				for _, path := range [...]string{"mapped", "pread"} {
					for _, p := range m.Paths {
						if p.Op == op && p.Path == path {
							fmt.Fprintf(w, "%s{volume=%q,op=%q,path=%q} %d\n", name, vol, op, path, get(p))
							break
						}
					}
				}
			}
		})
	}
	pathCounter("azote_volume_path_ops_total", "Page-cache reads and writes per volume by the path each took (mapped or pread), as the card chose it.", func(p cardproto.PathMetrics) uint64 { return p.Requests })
	pathCounter("azote_volume_path_bytes_total", "Page-cache bytes read and written per volume by the path each transfer took (mapped or pread).", func(p cardproto.PathMetrics) uint64 { return p.Bytes })
}

// interfaceMetrics is one net card's counters and the interface and
// instance azoted knows the card to serve.
type interfaceMetrics struct {
	iface, instance string
	m               *cardproto.NetMetrics
}

// writeInterfaceMetrics renders the net cards' counters, each family's
// samples together, labelled by azoted. Tx is what the guest sent, rx
// what it was given.
func writeInterfaceMetrics(w io.Writer, ifaces []interfaceMetrics) {
	family := func(name, typ, help string, sample func(labels string, m *cardproto.NetMetrics)) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, i := range ifaces {
			sample(fmt.Sprintf("interface=%q,instance=%q", i.iface, i.instance), i.m)
		}
	}
	both := func(name, help string, tx, rx func(m *cardproto.NetMetrics) uint64) {
		family(name, "counter", help, func(l string, m *cardproto.NetMetrics) {
			fmt.Fprintf(w, "%s{%s,direction=\"tx\"} %d\n", name, l, tx(m))
			fmt.Fprintf(w, "%s{%s,direction=\"rx\"} %d\n", name, l, rx(m))
		})
	}
	both("azote_interface_packets_total", "Frames per interface: tx those the guest sent, dropped or not (a TSO frame counts as its segments), rx those delivered to it.",
		func(m *cardproto.NetMetrics) uint64 { return m.TxPackets }, func(m *cardproto.NetMetrics) uint64 { return m.RxPackets })
	both("azote_interface_bytes_total", "Bytes of the frames counted in azote_interface_packets_total, Ethernet header included.",
		func(m *cardproto.NetMetrics) uint64 { return m.TxBytes }, func(m *cardproto.NetMetrics) uint64 { return m.RxBytes })
	family("azote_interface_sealed_packets_total", "counter", "Frames the guest sent that left its card, sealed, on the underlay.", func(l string, m *cardproto.NetMetrics) {
		fmt.Fprintf(w, "azote_interface_sealed_packets_total{%s} %d\n", l, m.TxSealed)
	})
	family("azote_interface_drops_total", "counter", "Frames dropped per interface, by reason (docs/network.md lists the reasons).", func(l string, m *cardproto.NetMetrics) {
		for r, n := range m.Drops {
			fmt.Fprintf(w, "azote_interface_drops_total{%s,reason=%q} %d\n", l, cardproto.NetDrops[r], n)
		}
	})
	family("azote_interface_arp_requests_total", "counter", "The guest's ARP requests, by whether its card answered them (the gateway, a neighbour) or not.", func(l string, m *cardproto.NetMetrics) {
		fmt.Fprintf(w, "azote_interface_arp_requests_total{%s,result=\"answered\"} %d\n", l, m.ARPAnswered)
		fmt.Fprintf(w, "azote_interface_arp_requests_total{%s,result=\"unanswered\"} %d\n", l, m.ARPUnanswered)
	})
	family("azote_interface_conntrack_entries", "gauge", "Flows in the interface's connection table.", func(l string, m *cardproto.NetMetrics) {
		fmt.Fprintf(w, "azote_interface_conntrack_entries{%s} %d\n", l, m.ConntrackEntries)
	})
	family("azote_interface_conntrack_allowance_available", "gauge", "Flows the connection table has room for (ENA's conntrack_allowance_available); at 0 new flows are dropped as conntrack_allowance_exceeded.", func(l string, m *cardproto.NetMetrics) {
		fmt.Fprintf(w, "azote_interface_conntrack_allowance_available{%s} %d\n", l, m.ConntrackAllowance)
	})
	family("azote_interface_metadata_requests_total", "counter", "Requests to the interface's metadata service (169.254.169.254), by outcome (docs/network.md).", func(l string, m *cardproto.NetMetrics) {
		if len(m.Metadata.Requests) != len(cardproto.MetadataOutcomes) {
			return // a card without the service
		}
		for o, n := range m.Metadata.Requests {
			fmt.Fprintf(w, "azote_interface_metadata_requests_total{%s,outcome=%q} %d\n", l, cardproto.MetadataOutcomes[o], n)
		}
	})
	family("azote_interface_metadata_dropped_frames_total", "counter", "Frames to the metadata address dropped: unavailable (the interface has no metadata), invalid (not TCP to port 80, a fragment, a bad checksum).", func(l string, m *cardproto.NetMetrics) {
		fmt.Fprintf(w, "azote_interface_metadata_dropped_frames_total{%s,reason=\"unavailable\"} %d\n", l, m.Metadata.Unavailable)
		fmt.Fprintf(w, "azote_interface_metadata_dropped_frames_total{%s,reason=\"invalid\"} %d\n", l, m.Metadata.Dropped)
	})
	family("azote_interface_metadata_tcp_events_total", "counter", "TCP events of the metadata service: refused (the interface's connection limit), reset (RSTs sent), retransmit (timeouts that sent segments again).", func(l string, m *cardproto.NetMetrics) {
		fmt.Fprintf(w, "azote_interface_metadata_tcp_events_total{%s,event=\"refused\"} %d\n", l, m.Metadata.Refused)
		fmt.Fprintf(w, "azote_interface_metadata_tcp_events_total{%s,event=\"reset\"} %d\n", l, m.Metadata.Resets)
		fmt.Fprintf(w, "azote_interface_metadata_tcp_events_total{%s,event=\"retransmit\"} %d\n", l, m.Metadata.Retransmits)
	})
	family("azote_interface_metadata_connections", "gauge", "Connections open to the interface's metadata service.", func(l string, m *cardproto.NetMetrics) {
		fmt.Fprintf(w, "azote_interface_metadata_connections{%s} %d\n", l, m.Metadata.Connections)
	})
}
