// Package image builds and stores azote guest images.
//
// An image is a Linux kernel, an initramfs and a kernel command line. The
// builder takes the kernel from Debian's package (fetched with apt-get on
// the client, never by azoted), resolves the virtio and vsock modules that
// kernel needs in dependency order from their .modinfo sections, and packs
// them with busybox and azote-agent into a reproducible newc cpio archive:
// the same inputs give the same bytes and therefore the same digests.
//
// The store keeps kernels and initramfs content-addressed by SHA-384, the
// digest measured launch uses; it verifies every blob it accepts.
//
// ExtractInitramfs unpacks an archive that anyone who can create an image
// wrote: it never follows a symlink, never reaches outside the directory it
// is given, never creates a device node, and refuses what it does not
// create (see its comment). azoted never calls it: the unprivileged rootfs
// helper does.
package image
