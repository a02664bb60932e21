//go:build !amd64 && !arm64

package encap

// hardwareAES: elsewhere this package does not vouch for the standard
// library's AES being constant-time.
const hardwareAES = false
