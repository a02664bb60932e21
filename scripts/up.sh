#!/usr/bin/env bash
# Sets azote up on a fresh Debian 12 machine and boots a guest: installs
# what is missing, builds, (re)starts azoted, builds the default image and
# a Debian image, and runs an instance named "demo" (Debian, booted from an
# encrypted root volume, with a network interface, your SSH key and an
# instance role), then logs in to it with ssh. Safe to run again.
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
ensure_packages qemu-system-x86 ca-certificates iproute2 iputils-ping debootstrap openssh-client
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

if $azote image describe debian >/dev/null 2>&1; then
	say "image debian exists"
else
	say "building image debian with debootstrap from Debian's archive (a few minutes the first time)"
	$azote image build --name debian --distro debian --packages curl --agent bin/azote-agent
fi

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
if ! $azote volume describe demo-root >/dev/null 2>&1; then
	say "creating the encrypted root volume demo-root (2 GiB) from image debian"
	$azote volume create --name demo-root --size 2G --image debian >/dev/null
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
# Your own SSH key (AZOTE_SSH_KEY, else ~/.ssh/id_ed25519), or one made
# for the demo; the guest gets its public half from the metadata service.
key=${AZOTE_SSH_KEY:-$HOME/.ssh/id_ed25519}
if [ ! -f "$key.pub" ]; then
	key=$STATE_DIR/demo-ssh-key
	[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C azote-demo -f "$key"
fi
if ! $azote key-pair describe demo >/dev/null 2>&1; then
	say "importing $key.pub as key pair demo"
	$azote key-pair import --key-name demo --public-key-material "file://$key.pub" >/dev/null
fi
# An instance role: the guest's code gets its credentials from the
# metadata service, with no key baked into the image.
if ! $azote iam get-instance-profile --instance-profile-name demo-app >/dev/null 2>&1; then
	say "creating role and instance profile demo-app (it may ask who it is: sts:GetCallerIdentity)"
	$azote iam create-role --role-name demo-app --assume-role-policy-document \
		'{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"compute.azote"},"Action":"sts:AssumeRole"}]}' >/dev/null
	$azote iam put-role-policy --role-name demo-app --policy-name whoami --policy-document \
		'{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}' >/dev/null
	$azote iam create-instance-profile --instance-profile-name demo-app >/dev/null
	$azote iam add-role-to-instance-profile --instance-profile-name demo-app --role-name demo-app >/dev/null
fi
say "booting instance demo (Debian; $VCPUS vCPUs, $MEMORY MiB; root volume demo-root, volume demo-data; a network interface in demo-subnet; key pair demo; instance profile demo-app)"
$azote instance run --name demo --image debian --vcpus "$VCPUS" --memory "$MEMORY" --root-volume demo-root --volume demo-data \
	--subnet demo-subnet --key-name demo --iam-instance-profile demo-app \
	--user-data $'#!/bin/sh\necho "hello from user data, run once at first boot" > /etc/motd' --timeout 8m >/dev/null
echo
$azote instance describe demo | grep -E '^(ID|State|Engine|Boot time|Guest timings|Guest sees|Volume vd.|Private IP):'
$azote volume describe demo-root | grep -E '^(ID|Encrypted|Attached to):'
echo
ip=$($azote instance describe demo -o json | sed -n 's/^  "private_ip": "\(.*\)",$/\1/p')
say "pinging the guest ($ip) from this host through the host gateway"
for _ in $(seq 60); do ping -c 1 -W 1 "$ip" >/dev/null 2>&1 && break; sleep 0.5; done
ping -c 3 -W 1 "$ip" || die "the guest at $ip does not answer through the host gateway; see $STATE_DIR/azoted.log"
echo
say "logging in with ssh (host key checked against the one the guest printed on its console)"
imds='t=$(curl -s -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" http://169.254.169.254/latest/api/token);
md() { curl -s -H "X-aws-ec2-metadata-token: $t" http://169.254.169.254/latest/$1; };
echo "whoami: $(whoami)@$(hostname)"; echo "instance: $(md meta-data/instance-id) ($(md meta-data/instance-type))";
echo "role credentials from the metadata service:"; md meta-data/iam/security-credentials/demo-app | grep -E "\"(Code|Type|AccessKeyId|Expiration)\""'
for _ in $(seq 15); do $azote instance ssh demo -i "$key" -- -o ConnectTimeout=5 -o BatchMode=yes true 2>/dev/null && break; sleep 2; done
$azote instance ssh demo -i "$key" -- -o BatchMode=yes "$imds" ||
	die "ssh into the guest failed; see $STATE_DIR/azoted.log and: bin/azote instance console demo"
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
  bin/azote instance ssh demo -i $key      # log in (user admin, sudo)
  bin/azote instance exec demo -- uname -a  # a command through the agent, audited
  bin/azote instance console demo -f      # Ctrl-C to leave
  bin/azote instance stop demo            # or start, reboot, terminate
  bin/azote volume list                   # demo-root and demo-data survive terminate
  bin/azote host metrics | grep volume    # per-volume I/O counters
  bin/azote network-interface list        # the guest's interface and the host gateway's
  ping $ip                       # the guest, over the VPC
  bin/azote audit lookup                  # every call and security decision
  bin/azote audit validate                # check the signed digest chain
  bin/azote init                          # once: root MFA + first admin for the HTTPS API
To stop everything:
  bin/azote instance terminate demo && kill \$(cat $pidfile)
MSG
