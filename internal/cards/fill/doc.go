// Package fill is the one-shot fill card (`azote-card fill`, Main): it
// writes a disk imported by `azote volume import` into a new volume,
// encrypting it under the volume's key as it goes. azoted starts it with
// cardhost.RunFill and pipes the upload's bytes through to it.
//
// The stream is the client's, so it is hostile; the card trusts nothing
// of it but its bytes. It reads exactly the declared length, in sectors
// of the blk card's on-disk format (AES-256-XTS, aes-xts-plain64: the
// tweak is the 512-byte sector number), refuses a stream that is shorter
// or longer, or whose SHA-256 is not the declared one, and writes every
// sector of the volume past the stream as encrypted zeros (a hole would
// decrypt to noise). It reports on stdout; whatever it wrote of a refused
// stream is azoted's to remove with the volume.
//
// Before it reads a byte of the stream it gives up root for its own uid,
// bounds the files it may grow to the volume's size and installs the
// cards' seccomp allow-list: it opens no file or socket and starts no
// process; it holds its pipe, its channel and the volume file. Its key
// and round keys live in locked memory left out of core dumps. It never
// writes plaintext anywhere: the only file it writes is the volume, and
// only ciphertext (unless the volume is a plaintext one).
package fill
