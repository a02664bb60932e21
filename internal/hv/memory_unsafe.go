package hv

import "unsafe"

// Why unsafe: KVM (KVM_SET_USER_MEMORY_REGION) and vhost-user
// (SET_MEM_TABLE, SET_VRING_ADDR) name guest memory by its address in this
// process, which Go exposes only through unsafe.Pointer. The address is
// taken of a mapping that lives as long as the Memory and is never moved
// by the garbage collector (it is not Go heap).

// hostAddr is the address of b's first byte in this process.
func hostAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
