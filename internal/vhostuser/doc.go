// Package vhostuser speaks the vhost-user protocol of QEMU's
// docs/interop/vhost-user.rst, both sides: the backend that azote's cards
// run, and a frontend that tests, benchmarks and azote-hv use to drive a
// card without QEMU.
//
// Every message from the peer is hostile input: sizes are checked against
// each request's payload layout before a field is read, file descriptors
// are counted, and a malformed message ends the connection with an error,
// never a panic. The package never opens a network socket.
package vhostuser
