#!/bin/sh
# The two-host test's guest (test/e2e/twohosts_test.go): what it does
# depends on the address DHCP gave it.
ip=$(cut -d' ' -f2 /run/azote/dhcp.eth0 2>/dev/null); ip=${ip%/*}
say() { echo "two-test: $*"; }
say "address $ip"

case "$ip" in
10.5.1.10) # on host A: takes the streams, and pings the late-comer
	tcpx recv 5001 &
	while true; do
		if ping -c 1 -W 1 10.5.1.30 >/dev/null 2>&1; then say "ping 10.5.1.30 ok"; else say "ping 10.5.1.30 fail"; fi
		sleep 0.2
	done &
	;;
10.5.1.20) # on host B: reaches host A's guest, then two streams of a known plaintext
	until ping -c 1 -W 1 10.5.1.10 >/dev/null 2>&1; do sleep 0.2; done
	say "reached 10.5.1.10"
	for n in 1 2; do
		say "stream $n start"
		tcpx send 10.5.1.10:5001 8388608 AZOTE-PLAINTEXT-CANARY- | sed "s/^/two-test: stream $n /"
		sleep 1
	done
	;;
esac
