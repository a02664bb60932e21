// Package vpcs owns azoted's network records: VPCs (table "vpcs") with
// their traffic keys, subnets ("subnets"), security groups and their
// rules ("security_groups"), network interfaces ("network_interfaces"),
// and the claims that keep addresses, MACs, numeric ids and names unique
// ("network_claims"). It allocates addresses as EC2 does (the first four
// and the last of a subnet are reserved), refuses what EC2 refuses, and
// gives the net card's wiring what it needs: an instance's interfaces,
// a VPC's mapping, the effective rules of an interface, the subnets to
// route between, the plaintext traffic keys, and a hook fired after
// every committed change. A key rotation is a sequence of changes to
// these records (rotation.go), so hosts that share the store take part
// in it without talking to each other.
//
// Every change is one store transaction that also writes its VPC's
// record, so two changes to one VPC conflict in the store instead of
// interleaving (on etcd as on bbolt); values that must be unique beyond a
// VPC are claimed with store.Tx.Create. A refusal leaves nothing made.
//
// A VPC's traffic key is stored only wrapped (internal/keys, key
// Network); its plaintext exists here only in locked memory, on its way
// to a card, and is never logged. The package never moves a frame and
// never touches an instance's record: the instances package makes and
// ends the interfaces of its instances through the seam (seam.go), each
// call one transaction of this package's store, which on a fleet is the
// shared etcd while instances stay in the host's own store. There the
// key is wrapped under the fleet key, other hosts' changes are followed
// through a watch (Follow), and an unreachable store is refused with
// refusal.ErrUnavailable.
package vpcs
