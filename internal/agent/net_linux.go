package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// dhcpScript is what busybox udhcpc runs on each lease event: it sets the
// address, MTU, routes (the classless ones when given, which replace the
// router option as RFC 3442 says) and resolvers, and leaves a line for
// the agent to report.
const dhcpScript = `#!/bin/sh
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	gw=
	if [ -n "$staticroutes" ]; then
		set -- $staticroutes
		while [ $# -ge 2 ]; do
			ip route replace "$1" via "$2" dev "$interface"
			[ "$1" = 0.0.0.0/0 ] && gw=$2
			shift 2
		done
	elif [ -n "$router" ]; then
		gw=${router%% *}
		ip route replace default via "$gw" dev "$interface"
	fi
	: > /etc/resolv.conf
	for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
	echo "$interface $ip/$mask gw=$gw mtu=$mtu" > "/run/azote/dhcp.$interface"
	;;
esac
`

// EventNetwork reports an interface configured by DHCP; Message is
// "eth0 10.0.1.10/24 gw=10.0.1.1 mtu=1410".
const EventNetwork = "network"

// configureNetwork brings up loopback and asks DHCP for each Ethernet
// interface the guest has (the card answers at once), one after the
// other, each bounded to a few seconds; it reports what each got.
func configureNetwork(report func(Report)) {
	ifaces, _ := filepath.Glob("/sys/class/net/eth*")
	run(exec.Command("ip", "link", "set", "lo", "up"))
	if len(ifaces) == 0 {
		return
	}
	if err := os.MkdirAll("/run/azote", 0o755); err != nil {
		report(Report{Event: EventError, Message: "network: " + err.Error()})
		return
	}
	script := "/run/azote/udhcpc.sh"
	if err := os.WriteFile(script, []byte(dhcpScript), 0o755); err != nil {
		report(Report{Event: EventError, Message: "network: " + err.Error()})
		return
	}
	for _, dir := range ifaces {
		name := filepath.Base(dir)
		// -q: quit once bound (the lease outlives the guest); -n: give up
		// after -t tries of -T seconds.
		err := run(exec.Command("udhcpc", "-i", name, "-q", "-n", "-t", "5", "-T", "1",
			"-O", "mtu", "-O", "staticroutes", "-s", script))
		b, rerr := os.ReadFile("/run/azote/dhcp." + name)
		switch {
		case rerr == nil:
			report(Report{Event: EventNetwork, Message: strings.TrimSpace(string(b))})
		case err != nil:
			report(Report{Event: EventError, Message: "network: " + name + ": dhcp: " + err.Error()})
		default:
			report(Report{Event: EventError, Message: "network: " + name + ": no lease"})
		}
	}
}

// run runs cmd to its end, with the orphan reaper held off so that the
// command's own exit status is not taken from it.
func run(cmd *exec.Cmd) error {
	reapMu.Lock()
	defer reapMu.Unlock()
	return cmd.Run()
}
