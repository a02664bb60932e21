#!/bin/sh
# The network tests' guest: what it does depends on the address DHCP gave
# it (test/e2e/network_test.go makes the instances).
ip=$(cut -d' ' -f2 /run/azote/dhcp.eth0 2>/dev/null); ip=${ip%/*}
say() { echo "net-test: $*"; }
say "address $ip"
say "queues $(ls /sys/class/net/eth0/queues 2>/dev/null | tr '\n' ' ')"

# probe prints, once a second, whether each address answers a ping.
probe() {
	while true; do
		for a in "$@"; do
			if ping -c 1 -W 1 "$a" >/dev/null 2>&1; then say "ping $a ok"; else say "ping $a fail"; fi
		done
		sleep 1
	done
}

case "$ip" in
10.0.1.10) # the server
	tcpx recv 5001 &  # not through sed, which holds lines while its input stays open
	;;
10.0.1.11) # the client: pings, then two streams, then a spoofed source
	probe 10.0.1.10 10.0.2.10 10.0.1.20 &
	until ping -c 1 -W 1 10.0.1.10 >/dev/null 2>&1; do sleep 1; done
	for n in 1 2; do
		say "stream $n start"
		tcpx send 10.0.1.10:5001 20971520 | sed "s/^/net-test: stream $n /"
		sleep 2
	done
	ip addr add 10.0.1.99/24 dev eth0
	if ping -I 10.0.1.99 -c 2 -W 1 10.0.1.10 >/dev/null 2>&1; then say "spoof passed"; else say "spoof dropped"; fi
	ip addr del 10.0.1.99/24 dev eth0
	say "client done"
	;;
10.0.2.10) # another subnet of the VPC
	probe 10.0.1.10 &
	;;
10.1.1.10) # another VPC
	probe 10.0.1.10 10.0.1.11 &
	;;
esac
