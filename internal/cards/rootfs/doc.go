// Package rootfs is the one-shot rootfs card: it fills a new root volume
// with an ext4 filesystem holding an image's initramfs tree, encrypted
// under the volume's key, in a process that holds no privilege on the
// host. It is the card side; azoted starts it with cardhost.RunRootfs.
//
// The archive comes from whoever created the image, so it is hostile.
// The card (`azote-card rootfs`, Main) runs in new user, pid, network,
// IPC, UTS and mount namespaces whose only user is root mapped to an
// unprivileged host id, with no supplementary groups. Before it reads a
// byte of the archive it drops every capability (the bounding and
// ambient sets included), locks the securebits so that no exec gives
// them back, sets no_new_privs and execs itself, so that every thread
// starts from those credentials; the new image makes itself non-dumpable
// and checks all of that for every thread in /proc. It then reads the
// volume key from its private channel into locked memory, extracts the
// archive (a donated descriptor) into a work directory (a descriptor too)
// with image.ExtractInitramfs, runs mke2fs -d on the tree into an unnamed
// file of its own (O_TMPFILE), and encrypts that, sector by sector, into
// the volume file (a descriptor). Inside its namespace the files it made
// are owned by root, so the filesystem holds root's files, as the guest
// expects.
//
// The card never runs with a capability on the host and reaches no host
// file but through its descriptors, apart from what any user may read
// (mke2fs, its libraries and configuration). The filesystem's plaintext
// never has a name and is gone when the card exits; azoted never reads
// it. When the card exits, the kernel kills anything it left running (it
// is its pid namespace's init).
package rootfs
