// Package imds is the instance metadata service of a net card: IMDSv2 at
// 169.254.169.254, answered inside the card from what azoted sent it
// (cardproto.NetMetadata), as Firecracker's MMDS answers inside its
// device. A guest's request never leaves the card: there is no socket, no
// host network stack and no other process on its path.
//
//	guest frame (switch: its own MAC and IP, to the gateway's MAC)
//	  └► Stack.FromGuest: a minimal TCP responder for one address, port 80
//	       (bounded connections and buffers, in-order data only,
//	       retransmission of what the guest has not acknowledged)
//	       └► ParseRequest: one HTTP/1.1 request, bounded
//	            └► Service.Serve: throttle, method, token, tree
//	  ◄┘ answer segments, IP TTL = the hop limit, to the guest
//
// It never opens a file or a socket, never logs a request or a token,
// and nothing a guest sends makes it panic, block or grow without bound:
// a bad request is answered with an error status and counted.
package imds
