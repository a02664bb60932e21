// Package runtime is the card side of every card process: what a card
// does before and around serving its device. It takes the descriptors
// azoted donated by name (never by number), reads the private channel,
// takes inherited listening sockets, gives up root for the card's own
// unprivileged uid, bounds the files the card may grow, installs the
// seccomp filter, and answers azoted's two questions a card may be asked
// later: its metrics, and (an instance-store card) its key, held in
// escrow for a restarted azoted.
//
// It never opens a path of its own choosing after the card is confined,
// never listens on a network socket, and never hands a key to a peer that
// has not proved it is azoted. It imports nothing of the control plane:
// the contract it follows is internal/cards/cardproto.
package runtime
