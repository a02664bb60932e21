//go:build amd64 && !purego

package cardproto

import "golang.org/x/sys/cpu"

// hasAESNI mirrors xts's hasAsm (which obeys GODEBUG=cpu.aes=off).
var hasAESNI = cpu.X86.HasAES
