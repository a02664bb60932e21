//go:build !amd64 || purego

package cardproto

// hasAESNI mirrors xts's hasAsm: no assembly here.
const hasAESNI = false
