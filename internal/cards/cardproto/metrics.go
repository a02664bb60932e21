package cardproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// BlkOps are the operations a blk card counts, in the order of its
// counters.
var BlkOps = [...]string{"read", "write", "flush", "get_id", "discard", "write_zeroes", "invalid", "unsupported"}

// LatencyBuckets are the upper bounds, in seconds, of a blk card's latency
// histogram; a last bucket without bound follows them.
var LatencyBuckets = [...]float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1}

// BlkMetrics is what a blk card answers on its metrics socket: its raw
// counters. azoted checks them and renders them itself, under the volume
// it knows the socket to serve, so a card (which handles guest data and is
// not trusted) can neither speak for another volume nor break azoted's
// metrics output.
type BlkMetrics struct {
	Ops         []OpMetrics `json:"ops"` // one per BlkOps, in that order
	ThrottledNs uint64      `json:"throttled_ns"`
	// IOPath is how the card reaches its file: "direct" (O_DIRECT),
	// "mapped" (the page cache, mapped; each transfer through the mapping
	// or pread/pwrite, whichever the card measures cheaper) or "pread".
	IOPath string `json:"io_path,omitempty"`
	// Paths counts, on "mapped", the reads and writes by the path each
	// took ("mapped" or "pread").
	Paths []PathMetrics `json:"paths,omitempty"`
}

// PathMetrics counts the transfers of one direction on one path.
type PathMetrics struct {
	Op       string `json:"op"`   // "read" or "write"
	Path     string `json:"path"` // "mapped" or "pread"
	Requests uint64 `json:"requests"`
	Bytes    uint64 `json:"bytes"`
}

// OpMetrics are one operation's counters.
type OpMetrics struct {
	Requests uint64 `json:"requests"`
	Bytes    uint64 `json:"bytes"`
	Errors   uint64 `json:"errors"`
	// Latency counts requests per bucket (not cumulative): one per
	// LatencyBuckets bound, then one for the rest.
	Latency      []uint64 `json:"latency"`
	LatencySumNs uint64   `json:"latency_sum_ns"`
}

// MaxBlkMetrics bounds an answer.
const MaxBlkMetrics = 16 << 10

// ErrBadMetrics is returned for an answer that is not well-formed metrics.
var ErrBadMetrics = errors.New("cardproto: malformed card metrics")

// ReadBlkMetrics reads and checks one answer.
func ReadBlkMetrics(r io.Reader) (BlkMetrics, error) {
	var m BlkMetrics
	b, err := io.ReadAll(io.LimitReader(r, MaxBlkMetrics+1))
	if err != nil {
		return m, err
	}
	if len(b) > MaxBlkMetrics {
		return m, fmt.Errorf("%w: over %d bytes", ErrBadMetrics, MaxBlkMetrics)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %v", ErrBadMetrics, err)
	}
	if len(m.Ops) != len(BlkOps) {
		return m, fmt.Errorf("%w: %d operations, want %d", ErrBadMetrics, len(m.Ops), len(BlkOps))
	}
	for i, o := range m.Ops {
		if len(o.Latency) != len(LatencyBuckets)+1 {
			return m, fmt.Errorf("%w: %s: %d latency buckets, want %d", ErrBadMetrics, BlkOps[i], len(o.Latency), len(LatencyBuckets)+1)
		}
		var n uint64
		for _, c := range o.Latency {
			if n+c < n {
				return m, fmt.Errorf("%w: %s: latency counts overflow", ErrBadMetrics, BlkOps[i])
			}
			n += c
		}
	}
	switch m.IOPath {
	case "", "direct", "mapped", "pread":
	default:
		return m, fmt.Errorf("%w: io path %q", ErrBadMetrics, m.IOPath)
	}
	if len(m.Paths) > 4 {
		return m, fmt.Errorf("%w: %d path counters", ErrBadMetrics, len(m.Paths))
	}
	for _, p := range m.Paths {
		if (p.Op != "read" && p.Op != "write") || (p.Path != "mapped" && p.Path != "pread") {
			return m, fmt.Errorf("%w: path counter %q/%q", ErrBadMetrics, p.Op, p.Path)
		}
	}
	return m, nil
}

// NetDrops are the reasons a net card drops a frame for, in the order of
// its drop counters; each is a label value of azoted's
// azote_interface_drops_total.
var NetDrops = [...]string{
	"security_group",               // no security group rule allows the flow
	"conntrack_allowance_exceeded", // the connection table is full (ENA's name)
	"rate_limit",                   // over the interface's packets or bits per second
	"spoof",                        // a source MAC or IP the interface does not own
	"decrypt",                      // a datagram that does not authenticate
	"replay",                       // a datagram seen before, or too old
	"wrong_vpc",                    // a datagram for a VPC or interface the card does not serve
	"malformed_chain",              // a descriptor chain the driver got wrong
	"malformed",                    // a frame that does not parse, or bad offload metadata
	"oversize",                     // a chain longer than the largest frame
	"ipv6",                         // IPv6 is not routed yet
	"unsupported",                  // an EtherType other than ARP and IPv4
	"no_route",                     // no interface of the VPC holds the destination
	"ttl",                          // the TTL ran out at the router
	"seal",                         // the frame could not be sealed
	"underlay",                     // the underlay refused the datagram
	"unknown_peer",                 // a sealed datagram from an index the VPC does not have
	"no_buffer",                    // the guest had no receive buffer for it
}

// NetMetrics is what a net card answers on its metrics socket: its raw
// counters, checked and rendered by azoted under the instance and the
// interface it knows the socket to serve (as for BlkMetrics). Tx is what
// the guest sent, Rx what the card gave it.
type NetMetrics struct {
	// TxPackets counts the frames the guest sent, dropped or not, as
	// the card cut them (a TSO frame counts as its segments); a chain
	// dropped before it yields a frame counts only among the drops.
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	// TxSealed counts the frames the guest sent that left the card,
	// sealed, on the underlay (the others were answered by the card, as
	// ARP and DHCP are, or dropped).
	TxSealed  uint64 `json:"tx_sealed"`
	RxPackets uint64 `json:"rx_packets"` // frames delivered to the guest
	RxBytes   uint64 `json:"rx_bytes"`
	// ARPAnswered and ARPUnanswered count the guest's ARP requests the
	// card answered and those it had no answer for.
	ARPAnswered   uint64 `json:"arp_answered"`
	ARPUnanswered uint64 `json:"arp_unanswered"`
	// Drops counts dropped frames, one counter per NetDrops, in that
	// order.
	Drops []uint64 `json:"drops"`
	// ConntrackEntries is the number of flows in the connection table
	// (a gauge), ConntrackAllowance how many more it has room for (ENA's
	// conntrack_allowance_available).
	ConntrackEntries   uint64 `json:"conntrack_entries"`
	ConntrackAllowance uint64 `json:"conntrack_allowance"`
	// Metadata counts the work of the card's metadata service.
	Metadata NetMetadataMetrics `json:"metadata"`
}

// MetadataOutcomes name how the metadata service answered a request, in
// the order of NetMetadataMetrics.Requests.
var MetadataOutcomes = [...]string{
	"ok",                 // 200
	"bad_request",        // 400: a bad token request, or a malformed one
	"unauthorized",       // 401: no token where one is required, or not a valid one
	"forbidden",          // 403: a token request carrying X-Forwarded-For
	"not_found",          // 404
	"method_not_allowed", // 405
	"throttled",          // 429: over the interface's requests per second
}

// NetMetadataMetrics is the metadata service's share of NetMetrics.
type NetMetadataMetrics struct {
	// Requests counts the requests answered, one counter per
	// MetadataOutcomes, in that order (empty from a card without the
	// service).
	Requests []uint64 `json:"requests,omitempty"`
	// Unavailable counts frames to the metadata address dropped because
	// the interface has no metadata (no instance); Dropped those that
	// are not TCP to port 80, fragments or bad checksums.
	Unavailable uint64 `json:"unavailable"`
	Dropped     uint64 `json:"dropped"`
	// Refused counts connections refused because the interface had as
	// many open as it may; Resets the RSTs sent; Retransmits the
	// timeouts that sent segments again.
	Refused     uint64 `json:"refused"`
	Resets      uint64 `json:"resets"`
	Retransmits uint64 `json:"retransmits"`
	// Connections is the number open (a gauge).
	Connections uint64 `json:"connections"`
}

// MaxNetMetrics bounds an answer.
const MaxNetMetrics = 4 << 10

// ReadNetMetrics reads and checks one answer.
func ReadNetMetrics(r io.Reader) (NetMetrics, error) {
	var m NetMetrics
	b, err := io.ReadAll(io.LimitReader(r, MaxNetMetrics+1))
	if err != nil {
		return m, err
	}
	if len(b) > MaxNetMetrics {
		return m, fmt.Errorf("%w: over %d bytes", ErrBadMetrics, MaxNetMetrics)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %v", ErrBadMetrics, err)
	}
	if len(m.Drops) != len(NetDrops) {
		return m, fmt.Errorf("%w: %d drop reasons, want %d", ErrBadMetrics, len(m.Drops), len(NetDrops))
	}
	if n := len(m.Metadata.Requests); n != 0 && n != len(MetadataOutcomes) {
		return m, fmt.Errorf("%w: %d metadata outcomes, want %d", ErrBadMetrics, n, len(MetadataOutcomes))
	}
	return m, nil
}
