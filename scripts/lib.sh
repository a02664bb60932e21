# Shared by up.sh and test.sh: install what is missing, build the binaries.
# shellcheck shell=bash

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] || die "run as root (azoted's socket is root-only and guests need /dev/kvm or QEMU with memfd memory)"
}

# ensure_packages PKG... installs the Debian packages that are not installed.
ensure_packages() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} = 0 ] && return 0
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

# no_etcd_service stops and disables the etcd service that Debian's
# etcd-server package starts on install: the tests start their own
# clusters on ports they pick, and nothing of azote uses the packaged one.
no_etcd_service() {
	[ -d /run/systemd/system ] || return 0
	systemctl is-enabled --quiet etcd.service 2>/dev/null || systemctl is-active --quiet etcd.service 2>/dev/null || return 0
	say "stopping and disabling the packaged etcd service (the tests start their own clusters)"
	systemctl disable --now etcd.service >/dev/null 2>&1 || true
}

# ensure_apt_lists makes sure apt-get download can find the kernel and
# busybox packages that images are built from.
ensure_apt_lists() {
	apt-cache show linux-image-cloud-amd64 busybox-static >/dev/null 2>&1 && return 0
	say "updating the package lists"
	apt-get update -q >/dev/null || die "apt-get update failed"
}

ensure_go() {
	export PATH="$PATH:/usr/local/go/bin"
	command -v go >/dev/null || die "Go is not installed (want Go 1.26 at /usr/local/go)"
}

# build puts every binary into bin/ (static: the agent runs as init in a
# guest without a C library).
build() {
	say "building azote, azoted, azote-agent, azote-card"
	CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/... || die "go build failed"
}
