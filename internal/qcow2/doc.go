// Package qcow2 reads a QEMU qcow2 disk image (versions 2 and 3) as the
// raw byte stream of its virtual disk, for `azote volume import`: the
// client converts as it uploads, so no plaintext copy of the disk is ever
// written to a file.
//
// The image is the user's, and may be truncated or crafted: every offset
// it holds (the L1 table, each L2 table, each data or compressed cluster)
// is checked against the file's size and alignment before it is read, a
// compressed cluster must inflate to exactly one cluster, and the memory
// the reader takes is bounded (the L1 table, one L2 table, one cluster).
// A bad image is ErrCorrupt, a valid one this reader does not handle
// (backing file, encryption, external data file, extended L2 entries,
// zstd compression) is ErrUnsupported; neither ever panics.
//
// It never writes, never follows a backing file's name, and reads only
// through the io.ReaderAt it is given. Snapshots are ignored: what is
// read is the active disk.
package qcow2
