// Package packet parses, checks and builds the Ethernet frames a guest's
// virtio-net device sends and receives, for the net card's data path.
//
// Parse reads one frame into a Packet without allocating: the Ethernet
// header, then ARP (IPv4 over Ethernet only) or IPv4 and its TCP, UDP or
// ICMP header. 802.1Q/802.1ad-tagged frames, IPv6 and every other EtherType
// are reported as their own Kind and not looked into, so the card can drop
// and count them. Everything in a frame is hostile: every length and offset
// is checked against the frame before it is used, the IPv4 header checksum
// is verified, and a frame that breaks a rule is refused with an error
// that wraps one of the sentinels in errors.go, so drops can be counted by
// reason with errors.Is. Parse never panics and never reads past the frame.
//
// The checksum helpers (checksum.go) compute the Internet checksum
// (RFC 1071) over byte slices, the TCP/UDP pseudo-header, and the
// incremental update of RFC 1624 that DecTTL uses when the card routes a
// packet between subnets.
//
// vnet.go holds the 12-byte virtio-net header (virtio 1.2 §5.1.6) and what
// the card does in software when a receiver did not negotiate an offload
// the sender used: Finish completes a VIRTIO_NET_HDR_F_NEEDS_CSUM checksum
// and Segment cuts a TCPv4 GSO frame into MSS-sized frames. build.go makes
// the few frames the card originates itself: ARP replies and IPv4/UDP
// (DHCP).
//
// The package never allocates on the per-frame paths (Parse, the checksums,
// DecTTL, Finish, Segment; the Append builders only when the caller's
// buffer is too small), never logs, and keeps no state between calls.
package packet
