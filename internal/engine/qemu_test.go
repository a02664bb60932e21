package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestQEMUNamesNoStatePath: QEMU, which runs as a uid that cannot reach the
// state directory, is given descriptors and names the cards' sockets
// relative to its working directory; nothing on its command line is a
// path under the state directory (regression: it ran as root and opened
// the kernel, initramfs and console, and bound its sockets, by path).
func TestQEMUNamesNoStatePath(t *testing.T) {
	const state = "/var/lib/azote"
	q := &QEMU{Binary: "/usr/bin/qemu-system-x86_64", Exec: "/usr/lib/azote/azote-card", accel: "tcg"}
	s := Spec{
		InstanceID: "i-1", Dir: state + "/instances/i-1", Kernel: state + "/images/sha384/k", Initrd: state + "/images/sha384/i",
		Cmdline: "console=ttyS0", VCPUs: 1, MemoryMiB: 128, ConsolePath: state + "/instances/i-1/console.log",
		Devices: []Device{{Kind: DeviceBlk, ID: "vol-1", Socket: state + "/instances/i-1/vol-1.sock", Queues: 1}},
		UID:     1879048200,
	}
	argv := q.command(s, q.args(s, qemuFiles{console: 3, qmp: 4, control: 5, kernel: 6, initrd: 7}))
	for _, a := range argv {
		if strings.Contains(a, state) {
			t.Errorf("argument %q names a path under the state directory", a)
		}
	}
	if argv[0] != q.Exec || argv[1] != "exec" || !slices.Contains(argv, "1879048200") || !slices.Contains(argv, q.Binary) {
		t.Errorf("not started through %s exec as uid %d: %q", q.Exec, s.UID, argv)
	}
	for _, want := range []string{"-kernel /proc/self/fd/6", "-initrd /proc/self/fd/7", "-add-fd fd=3,set=1",
		"-chardev file,id=console,path=/dev/fdset/1,append=on", "-chardev socket,id=qmp,fd=4,server=on,wait=off",
		"-chardev socket,id=control,fd=5,server=on,wait=off", "-chardev socket,id=disk0,path=./vol-1.sock,reconnect=1"} {
		if !strings.Contains(strings.Join(argv, " "), want) {
			t.Errorf("command line lacks %q", want)
		}
	}
	s.UID = 0
	if argv := q.command(s, nil); argv[0] != q.Binary {
		t.Errorf("uid 0 (an engine of an older azoted): %q", argv)
	}
}

// A device of a kind QEMU cannot attach is refused before anything
// starts, not silently left out of the guest.
func TestQEMURefusesUnknownDeviceKind(t *testing.T) {
	q := &QEMU{Binary: "/nonexistent/qemu", accel: "tcg"}
	_, err := q.Launch(context.Background(), Spec{InstanceID: "i-1", Dir: t.TempDir(),
		Devices: []Device{{Kind: DeviceBlk, ID: "vol-1"}, {Kind: "vsock", ID: "v-1"}}})
	if !errors.Is(err, ErrDeviceKind) {
		t.Fatalf("got %v, want ErrDeviceKind", err)
	}
}

// A net device becomes a vhost-user netdev that reconnects to a
// restarted card, with its MAC, and with multiqueue when it has pairs.
func TestQEMUNetDevice(t *testing.T) {
	q := &QEMU{Binary: "/usr/bin/qemu-system-x86_64", accel: "kvm"}
	dir := t.TempDir()
	args := strings.Join(q.args(Spec{InstanceID: "i-1", Dir: dir, VCPUs: 2, MemoryMiB: 256,
		Devices: []Device{{Kind: DeviceNet, ID: "eni-1", Socket: dir + "/net.sock", Queues: 2, MAC: "02:00:00:00:00:07"}}}, qemuFiles{}), " ")
	for _, want := range []string{
		"-chardev socket,id=net0,path=./net.sock,reconnect=1",
		"-netdev vhost-user,id=net0,chardev=net0,queues=2",
		"-device virtio-net-pci,netdev=net0,mac=02:00:00:00:00:07,mq=on,vectors=6",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU arguments lack %q:\n%s", want, args)
		}
	}
}

// Under TCG a net device goes without MSI-X (QEMU 7.2 crashes unmasking
// a vhost-user netdev's vectors there).
func TestQEMUNetDeviceTCG(t *testing.T) {
	q := &QEMU{Binary: "/usr/bin/qemu-system-x86_64", accel: "tcg"}
	dir := t.TempDir()
	args := strings.Join(q.args(Spec{InstanceID: "i-1", Dir: dir, VCPUs: 2, MemoryMiB: 256,
		Devices: []Device{{Kind: DeviceNet, ID: "eni-1", Socket: dir + "/net.sock", Queues: 2, MAC: "02:00:00:00:00:07"}}}, qemuFiles{}), " ")
	if want := "-device virtio-net-pci,netdev=net0,mac=02:00:00:00:00:07,vectors=0,mq=on"; !strings.Contains(args, want) {
		t.Errorf("QEMU arguments lack %q:\n%s", want, args)
	}
}
