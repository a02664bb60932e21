#!/usr/bin/env bash
# Installs what the tests need and runs all of them: lint (go vet,
# staticcheck), unit tests with the race detector, short fuzz runs, and the
# end-to-end tests that boot real Linux guests through azoted.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
ensure_packages qemu-system-x86 qemu-utils ca-certificates openssl cpio e2fsprogs python3-cryptography cryptsetup-bin busybox-static isc-dhcp-client iproute2 iputils-ping etcd-server debootstrap openssh-client awscli swtpm swtpm-tools acpica-tools
no_etcd_service
ensure_apt_lists
ensure_go

say "lint: gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$unformatted" ] || die "gofmt needed: $unformatted"
go vet ./...
go tool staticcheck ./...
# go.mod and go.sum say exactly what the code imports.
go mod tidy -diff || die "go mod tidy changes go.mod/go.sum: run it and commit the result"

say "unit tests (race detector)"
go test -race -count=1 $(go list ./... | grep -v /test/e2e)

say "fuzz (10 s per target)"
fuzz_targets() {
	grep -rl --include='*_test.go' '^func Fuzz' internal | while read -r f; do
		pkg=./$(dirname "$f")
		grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r fn; do echo "$pkg $fn"; done
	done
}
fuzz() { go test "$1" -run '^$' -fuzz "^$2\$" -fuzztime 10s 2>&1; }
# Go's fuzz coordinator can give up with "context deadline exceeded" when
# a worker restarts near the end of -fuzztime on a loaded machine; that is
# not a finding (no failing input is written), so such a run is repeated,
# at most twice. Any other failure stops the tests with its output.
engine_timeout() {
	printf '%s' "$1" | grep -q 'context deadline exceeded' && ! printf '%s' "$1" | grep -q 'Failing input written'
}
fuzz_targets | while read -r pkg fn; do
	for try in 1 2 3; do
		if out=$(fuzz "$pkg" "$fn"); then
			echo "ok   $pkg $fn"
			break
		fi
		if ! engine_timeout "$out" || [ "$try" = 3 ]; then
			printf '%s\n' "$out" | tail -20
			die "fuzz $pkg $fn failed"
		fi
		echo "note $pkg $fn: the fuzz engine timed out at its deadline without a finding; running it again"
	done
done

say "end-to-end tests (real guests under QEMU through azoted)"
set +o pipefail
go test -count=1 -timeout 20m -v ./test/e2e 2>&1 | grep -v -E '^\s*$'
status=${PIPESTATUS[0]}
set -o pipefail
[ "$status" = 0 ] || die "end-to-end tests failed"
say "all tests passed"
