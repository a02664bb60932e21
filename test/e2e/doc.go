// Package e2e holds whole-system tests: they build every binary, start
// azoted on a fresh state directory, build the default image from Debian's
// kernel package, and drive real Linux guests under QEMU through the azote
// CLI, as a user would. They need root, qemu-system-x86_64 and apt-get;
// scripts/test.sh installs what is missing.
package e2e
