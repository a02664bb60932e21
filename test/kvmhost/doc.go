// Package kvmhost runs commands inside a "KVM test host": a Linux guest
// under QEMU's TCG emulator with AMD SVM emulated, in which Debian's kvm
// and kvm_amd modules give a working /dev/kvm. It is how azote-hv is
// tested on machines without usable hardware virtualization, which is all
// of this project's own machines: TCG emulates the CPU, so it works on any
// x86-64 host, Intel included, and needs neither /dev/kvm nor root.
//
// Run builds the test host's initramfs with internal/image (Debian's cloud
// kernel, busybox, azote-agent as init, the kvm modules, the binaries and
// files the caller gives), boots it, waits for /dev/kvm, runs one command
// and returns its output and exit status. RunTest does that for a Go test
// binary built with go test -c and reports into a *testing.T.
//
// The command's output travels on its own serial port (COM2, raw mode),
// never on the console: kernel messages cannot interleave with it, and it
// is framed by begin and end lines that carry a per-run nonce and the exit
// status, so a command that prints a look-alike line cannot end the run
// early. The console goes to Options.Log.
//
// Run never leaves a process behind: QEMU is killed when the command has
// ended, the timeout has passed or the context is done, and it is started
// with a parent-death signal, so it dies with the test process too. Runs
// in the processes of one machine take turns through a lock file: each
// test host emulates two CPUs, and two at once on a small CI runner only
// make both slow enough to miss their timeouts.
//
// Tests that need KVM call Direct: inside a test host (and where an
// operator says the machine's own /dev/kvm boots Linux) they run for real;
// elsewhere they run themselves inside a test host through RunTest. They
// never skip for want of KVM.
package kvmhost
