#!/bin/sh
# Run by azote-agent in the e2e load image after the guest is ready.
# /dev/vda: an encrypted instance-store volume on O_DIRECT (at least 48 MiB).
# Four writers each get 12 MiB of random data (the sha256 of every MiB is
# kept), then write it to their own quarter of the disk three times over,
# in one O_DIRECT stream each, while the test kills the card (the volume is
# throttled, so requests wait in the card). Then every MiB is read back and
# compared.
say() { echo "blk-load: $*"; }
for w in 0 1 2 3; do
	dd if=/dev/urandom of=/tmp/w$w bs=1M count=12 2>/dev/null
	i=0
	while [ $i -lt 12 ]; do
		echo "$((w * 12 + i)) $(dd if=/tmp/w$w bs=1M skip=$i count=1 2>/dev/null | sha256sum | cut -d' ' -f1)" >>/tmp/shas
		i=$((i + 1))
	done
done
say "data ready"
writer() {
	w=$1
	for pass in 1 2 3; do
		dd if=/tmp/w$w of=/dev/vda bs=1M seek=$((w * 12)) count=12 oflag=direct conv=notrunc,fsync 2>/dev/null ||
			{ say "writer $w failed"; return 1; }
		say "writer $w pass $pass"
	done
}
for w in 0 1 2 3; do writer $w & done
wait
say "writers done"
bad=0
while read -r n want; do
	got=$(dd if=/dev/vda bs=1M skip=$n count=1 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
	[ "$got" = "$want" ] || { say "chunk $n differs"; bad=$((bad + 1)); }
done </tmp/shas
say "verified $(wc -l </tmp/shas) chunks, bad=$bad"
