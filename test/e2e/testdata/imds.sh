#!/bin/sh
# The metadata tests' guest (test/e2e/imds_test.go): waits for its
# address, checks the IMDSv2 rules, then gets role credentials as an
# application does and calls azoted's API with them.
say() { echo "imds-test: $*"; }
for _ in $(seq 60); do [ -s /run/azote/dhcp.eth0 ] && break; sleep 1; done
say "address $(cut -d' ' -f2 /run/azote/dhcp.eth0 2>/dev/null)"
imdsprobe check
imdsprobe creds
say "probe done $?"
