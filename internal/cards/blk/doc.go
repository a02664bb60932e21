// Package blk serves one virtio-blk device over vhost-user: the block data
// plane of an instance, in a process of its own. Every sector is encrypted
// with AES-256-XTS in dm-crypt's aes-xts-plain64 format before it reaches
// the backing file, unless the volume is explicitly plaintext.
//
// It never sees a key on disk, in argv or in the environment (the key
// arrives over the card's private channel, straight into locked memory left
// out of core dumps, where its XTS round keys also live), never hands its
// key back but to azoted (the escrow secret), never logs per request, and
// never opens a network socket. Everything the guest puts in a request is
// validated against the device's capacity before any I/O.
package blk
