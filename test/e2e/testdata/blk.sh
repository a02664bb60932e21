#!/bin/sh
# Run by azote-agent in the e2e volume image after the guest is ready.
# /dev/vda: an encrypted persistent volume (64 MiB); /dev/vdb: read-only.
say() { echo "blk-test: $*"; }
if mount -t ext4 /dev/vda /mnt 2>/dev/null; then
	say "mounted existing filesystem"
else
	# The filesystem leaves the last MiB free for a raw marker sector.
	mkfs.ext4 -q -F /dev/vda 63M || { say "mkfs failed"; exit 1; }
	mount -t ext4 /dev/vda /mnt || { say "mount failed"; exit 1; }
	i=0
	while [ $i -lt 3000 ]; do echo "AZOTE-PLAINTEXT-PATTERN-$i"; i=$((i + 1)); done >/mnt/proof.txt
	# Sector 130000 (in the free last MiB) gets a known 512-byte marker.
	printf 'AZOTE-SECTOR-MARKER-%0492d' 7 | dd of=/dev/vda bs=512 seek=130000 count=1 conv=fsync 2>/dev/null
	sync
	say "created filesystem"
fi
say "sha=$(sha256sum /mnt/proof.txt | cut -d' ' -f1)"
umount /mnt
if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 conv=fsync 2>/dev/null; then
	say "ro-write=allowed"
else
	say "ro-write=refused"
fi
dd if=/dev/vdb bs=4096 count=1 2>/dev/null | wc -c | sed 's/^/blk-test: ro-read=/'
say "done"
