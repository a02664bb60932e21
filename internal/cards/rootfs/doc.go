// Package rootfs turns an image's initramfs into the ext4 filesystem of a
// root volume, in a one-shot process that holds no privilege on the host.
//
// The archive comes from whoever created the image, so it is hostile. Run
// (azoted's side) starts `azote-card rootfs` (Main, the helper's side) in
// new user, pid, network, IPC and UTS namespaces whose only user is root
// mapped to an unprivileged host id, with no supplementary groups. Before
// it reads a byte of the archive the helper drops every capability (the
// bounding and ambient sets included), locks the securebits so that no
// exec gives them back, sets no_new_privs and execs itself, so that every
// thread starts from those credentials; the new image makes itself
// non-dumpable and checks all of that for every thread in /proc. It then extracts the archive (handed
// over as a descriptor) into a work directory (a descriptor too) with
// image.ExtractInitramfs, and runs mke2fs -d on the tree into the output
// file (a descriptor). Inside its namespace the files it made are owned by
// root, so the filesystem holds root's files, as the guest expects.
//
// The helper never runs with a capability on the host, never sees a
// volume key (azoted encrypts what it produced), and reaches no host file
// but through its descriptors, apart from what any user may read (mke2fs,
// its libraries and configuration). When it exits, the kernel kills
// anything it left running (it is its pid namespace's init).
package rootfs
