package encap

import "golang.org/x/sys/cpu"

// hardwareAES: the standard library's AES-GCM runs on AES-NI and
// PCLMULQDQ here (x/sys/cpu obeys GODEBUG=cpu.aes=off, as the standard
// library does).
var hardwareAES = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
