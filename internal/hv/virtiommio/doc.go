// Package virtiommio is the virtio-mmio transport (virtio 1.2 §4.2,
// version 2 registers) of azote-hv's devices: the registers a guest driver
// reads and writes to find a device, negotiate features, place its rings
// and start it. The device's data plane is never here: once the driver
// sets DRIVER_OK the transport hands the rings to its Backend (a card,
// through vhost-user), the guest's queue notifications go to the card by
// a KVM ioeventfd and the card's interrupts come back by a KVM irqfd.
//
// Every register access comes from the guest and is hostile: sizes,
// offsets, queue indices and ring sizes are checked, and a bad access is
// ignored (reads give zero), never a panic. The package never touches
// guest memory and never opens a file or a socket.
package virtiommio
