#!/bin/sh
# Run by azote-agent after the guest is ready. With a root volume, / is
# ext4 on /dev/vda and the counter survives stop and start.
n=$(cat /boots 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" >/boots
sync
echo "root-test: boots=$n fs=$(awk '$2 == "/" { print $1 "," $3 }' /proc/mounts | tail -n 1)"
