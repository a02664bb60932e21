#!/bin/sh
# Run by azote-agent in the e2e load image after the guest is ready.
# /dev/vda: an encrypted instance-store volume on O_DIRECT (at least 144 MiB).
# Four writers each get 12 MiB of random data, then write it in three
# passes, each pass to its own region of the disk, in one O_DIRECT stream
# per pass, while the test kills the card (the volume is throttled, so
# requests wait in the card). No MiB is written twice, so a lost or stale
# write cannot be covered by a later one: every MiB is read back and
# compared with the sha256 of what was written there.
say() { echo "blk-load: $*"; }
for w in 0 1 2 3; do
	dd if=/dev/urandom of=/tmp/w$w bs=1M count=12 2>/dev/null
	i=0
	while [ $i -lt 12 ]; do
		sum=$(dd if=/tmp/w$w bs=1M skip=$i count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
		for pass in 0 1 2; do echo "$((pass * 48 + w * 12 + i)) $sum" >>/tmp/shas; done
		i=$((i + 1))
	done
done
say "data ready"
writer() {
	w=$1
	for pass in 0 1 2; do
		dd if=/tmp/w$w of=/dev/vda bs=1M seek=$((pass * 48 + w * 12)) count=12 oflag=direct conv=notrunc,fsync 2>/dev/null ||
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
