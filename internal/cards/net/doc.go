// Package net is the network card: one process per network interface,
// serving a virtio-net device over vhost-user, with the whole data plane
// of the interface inside it — ARP and DHCP for its guest, switching and
// routing within the VPC, security groups, rate limits, and the
// encapsulation of every frame that leaves it, encrypted, to the card of
// the destination interface over a UDP underlay. Nothing of it runs on
// the host OS, in the hypervisor or in azoted.
//
//	guest TX ring ──► Handle: header, offloads (Finish/Segment)
//	                    └► egress: spoof check, ARP/DHCP answered here,
//	                       route (same subnet or via the gateway), security
//	                       groups, rate limit ──► Tunnel.Seal ──► underlay
//	underlay ──► rxLoop: Tunnel.Open (VPC, destination, replay, tag)
//	                    └► ingress: destination, source binding, security
//	                       groups ──► guest RX ring (MRG_RXBUF)
//
// A frame the card cannot place is dropped and counted by reason
// (metrics.go); nothing a guest or a peer sends makes it crash.
package net
