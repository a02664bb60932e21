// Package dhcp is the DHCPv4 server (RFC 2131, options of RFC 2132 and
// classless static routes of RFC 3442) that the net card runs for its one
// guest, so that an unmodified busybox udhcpc, dhclient or
// systemd-networkd configures the guest's interface from the VPC's records.
//
// There is no pool and no lease database: the card knows the one address
// its interface has (Config), and Reply answers that interface's MAC
// address only. DISCOVER gets an OFFER of that address; REQUEST, in each
// of the client states of RFC 2131 §4.3.2 (selecting, init-reboot,
// renewing, rebinding), gets an ACK when it asks for that address and a
// NAK when it asks for any other; INFORM gets an ACK with the parameters
// and no lease; RELEASE and DECLINE get nothing. AppendFrame wraps a reply
// in the Ethernet, IPv4 and UDP headers that RFC 2131 §4.1 addresses it
// with.
//
// Requests come from the guest and are hostile: every length is checked,
// options are read from the options field and, as option 52 says, from
// file and sname, and a malformed request is refused with an error that
// wraps one of the sentinels in errors.go. Reply never panics, never
// allocates when out has room for the reply, and keeps no state; the card
// calls it from its data path. It never answers a hardware address other
// than Config.ClientMAC and never offers an address other than
// Config.ClientIP.
package dhcp
