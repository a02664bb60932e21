#!/usr/bin/env bash
# Sets azote up on a fresh Debian 12 machine and boots a guest: installs
# what is missing, builds, (re)starts azoted, builds the default image and
# runs an instance named "demo". Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

STATE_DIR=${AZOTE_STATE_DIR:-/var/lib/azote}
export AZOTE_SOCKET=${AZOTE_SOCKET:-/run/azote/azoted.sock}
VCPUS=${AZOTE_VCPUS:-2}
MEMORY=${AZOTE_MEMORY_MIB:-512}
# The demo VPC's first two octets: 10.77.0.0/16 unless it clashes here.
DEMO_CIDR=${AZOTE_DEMO_NET:-10.77}

need_root
ensure_packages qemu-system-x86 ca-certificates iproute2 iputils-ping debootstrap
ensure_apt_lists
ensure_go
build
azote=bin/azote

# (Re)start azoted. Instances keep running across the restart and are
# re-adopted by the new azoted.
mkdir -p "$STATE_DIR"
pidfile=$STATE_DIR/azoted.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	say "restarting azoted (pid $(cat "$pidfile")); running instances are re-adopted"
	kill -TERM "$(cat "$pidfile")"
	for _ in $(seq 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
fi
say "starting azoted (state $STATE_DIR, socket $AZOTE_SOCKET, log $STATE_DIR/azoted.log)"
setsid bin/azoted --state-dir "$STATE_DIR" --socket "$AZOTE_SOCKET" >>"$STATE_DIR/azoted.log" 2>&1 </dev/null &
echo $! >"$pidfile"
for _ in $(seq 150); do $azote host info >/dev/null 2>&1 && break; sleep 0.1; done
$azote host info >/dev/null 2>&1 || { tail -20 "$STATE_DIR/azoted.log" >&2; die "azoted did not start"; }
$azote host info

if $azote image describe default >/dev/null 2>&1; then
	say "image default exists"
else
	say "building image default from Debian's kernel package"
	$azote image build --name default --agent bin/azote-agent >/dev/null
fi
$azote image describe default

# One demo instance: replace the one an earlier run left.
if id=$($azote instance describe demo -o json 2>/dev/null | sed -n 's/^  "id": "\(.*\)",$/\1/p') && [ -n "$id" ] &&
	[ "$($azote instance describe demo -o json | sed -n 's/^  "state": "\(.*\)",$/\1/p')" != terminated ]; then
	say "terminating the previous demo instance $id"
	$azote instance terminate "$id" >/dev/null
fi
if ! $azote volume describe demo-data >/dev/null 2>&1; then
	say "creating the encrypted persistent volume demo-data (1 GiB, aes-xts-plain64)"
	$azote volume create --name demo-data --size 1G --kind persistent >/dev/null
fi
# A VPC with the host gateway on, so that this host can reach the demo
# instance over the VPC (its own net card, AES-256-GCM on the underlay).
if ! $azote vpc describe demo-vpc >/dev/null 2>&1; then
	say "creating VPC demo-vpc ($DEMO_CIDR.0.0/16, host gateway on) and subnet demo-subnet ($DEMO_CIDR.1.0/24)"
	$azote vpc create --name demo-vpc --cidr "$DEMO_CIDR.0.0/16" --host-gateway >/dev/null
fi
if ! $azote subnet describe demo-subnet >/dev/null 2>&1; then
	$azote subnet create --name demo-subnet --vpc demo-vpc --cidr "$DEMO_CIDR.1.0/24" >/dev/null
fi
say "booting instance demo ($VCPUS vCPUs, $MEMORY MiB, volume demo-data as /dev/vda, a network interface in demo-subnet)"
$azote instance run --name demo --vcpus "$VCPUS" --memory "$MEMORY" --volume demo-data --subnet demo-subnet >/dev/null
echo
$azote instance describe demo | grep -E '^(ID|State|Engine|Boot time|Guest timings|Guest sees|Volume vda|Private IP):'
$azote volume describe demo-data | grep -E '^(ID|Encrypted|Attached to):'
echo
ip=$($azote instance describe demo -o json | sed -n 's/^  "private_ip": "\(.*\)",$/\1/p')
say "pinging the guest ($ip) from this host through the host gateway"
for _ in $(seq 60); do ping -c 1 -W 1 "$ip" >/dev/null 2>&1 && break; sleep 0.5; done
ping -c 3 -W 1 "$ip" || die "the guest at $ip does not answer through the host gateway; see $STATE_DIR/azoted.log"
echo
say "console tail"
$azote instance console demo --tail 1500
echo
say "audit trail (newest first)"
$azote audit lookup --limit 8
echo
cat <<MSG
The guest keeps running. Try:
  bin/azote instance list
  bin/azote instance console demo -f      # Ctrl-C to leave
  bin/azote instance stop demo            # or start, reboot, terminate
  bin/azote volume list                   # demo-data survives terminate
  bin/azote host metrics | grep volume    # per-volume I/O counters
  bin/azote network-interface list        # the guest's interface and the host gateway's
  ping $ip                       # the guest, over the VPC
  bin/azote audit lookup                  # every call and security decision
  bin/azote audit validate                # check the signed digest chain
  bin/azote init                          # once: root MFA + first admin for the HTTPS API
To stop everything:
  bin/azote instance terminate demo && kill \$(cat $pidfile)
MSG
