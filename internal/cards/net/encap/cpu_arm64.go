package encap

import "golang.org/x/sys/cpu"

// hardwareAES: the standard library's AES-GCM runs on the ARMv8 AES and
// PMULL instructions here.
var hardwareAES = cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
