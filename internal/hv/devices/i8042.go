package devices

import (
	"sync"
	"sync/atomic"
)

// i8042 ports as offsets in its window, status bits, controller commands
// and command-byte (CTR) bits.
const (
	i8042Data    = 0 // port 0x60
	i8042Command = 4 // port 0x64: status on read, command on write

	i8042StatOBF     = 0x01 // output buffer full: a byte waits at 0x60
	i8042StatIBF     = 0x02 // input buffer full: never, writes are taken at once
	i8042StatSys     = 0x04 // system flag, mirrors CTR bit 2
	i8042StatCmd     = 0x08 // the last write went to 0x64
	i8042StatUnlock  = 0x10 // keyboard not inhibited
	i8042StatAuxData = 0x20 // the waiting byte is from the aux port

	i8042CmdReadCTR     = 0x20
	i8042CmdWriteCTR    = 0x60
	i8042CmdAuxDisable  = 0xa7
	i8042CmdAuxEnable   = 0xa8
	i8042CmdAuxTest     = 0xa9
	i8042CmdSelfTest    = 0xaa
	i8042CmdKbdTest     = 0xab
	i8042CmdKbdDisable  = 0xad
	i8042CmdKbdEnable   = 0xae
	i8042CmdReadOutput  = 0xd0
	i8042CmdWriteOutput = 0xd1
	i8042CmdWriteKbdOut = 0xd2 // next data byte appears as keyboard input
	i8042CmdWriteAuxOut = 0xd3 // next data byte appears as aux input (Linux's AUX loop test)
	i8042CmdWriteAux    = 0xd4 // next data byte goes to the mouse
	i8042CmdPulse       = 0xf0 // 0xf0-0xff: pulse the output lines whose bit is 0; bit 0 is CPU reset

	i8042CTRKbdInt  = 0x01
	i8042CTRSys     = 0x04
	i8042CTRKbdDis  = 0x10
	i8042CTRAuxDis  = 0x20
	i8042CTRXlate   = 0x40
	i8042CTRDefault = i8042CTRKbdInt | i8042CTRSys | i8042CTRAuxDis | i8042CTRXlate

	i8042OutReset   = 0x01 // output port bit 0: CPU reset line, active low
	i8042OutA20     = 0x02
	i8042OutDefault = i8042OutReset | i8042OutA20

	i8042SelfTestOK = 0x55
	i8042PortTestOK = 0x00

	i8042QueueLen = 8
)

// I8042 is a PS/2 keyboard controller with nothing plugged into it. Its
// one real job is the CPU reset line: a write of 0xFE to port 0x64 (what
// Linux's reboot does with reboot=k, and after the ACPI reset register
// when that fails) calls the reset callback, and the VMM turns that into
// a guest reboot. The status register never shows the input buffer full,
// so the reboot path's wait for it ends at once.
//
// Which kernel command line it expects: none, if the ACPI tables say
// there is no 8042 (FADT IAPC_BOOT_ARCH without the 8042 flag and no
// PNP0303 in the DSDT). Linux's i8042 driver then gives up without
// touching a port ("PNP: No PS/2 controller found"), which is what
// azote-hv's tables should say; the reset pulse works regardless, since
// the reboot code writes the port directly. If the tables do advertise an
// 8042, use Firecracker's `i8042.noaux i8042.nomux i8042.nopnp
// i8042.dumbkbd`: the driver then reads and writes the command byte,
// which this controller answers, and attaches a keyboard it never sends
// commands to. Without them it finds a controller whose keyboard and
// mouse never answer, and its (asynchronous) probes of them time out.
//
// The controller answers its own commands (command byte, self and port
// tests, output port, the AUX loopback) from a small output queue that
// the guest polls; it raises no IRQ 1 or 12, since with no keyboard or
// mouse nothing ever arrives unasked. Bytes meant for the keyboard or
// mouse are dropped and counted.
type I8042 struct {
	reset func()

	dropped atomic.Uint64

	mu      sync.Mutex
	ctr     uint8
	outp    uint8
	lastCmd bool  // the last write went to the command port
	pending uint8 // a command waiting for its data byte, or 0
	last    uint8 // the byte last read from 0x60, read again when the buffer is empty
	queue   [i8042QueueLen]uint16
	qHead   int
	qLen    int
}

// queue entries carry the aux flag above the byte.
const i8042QAux = 0x100

// NewI8042 returns a controller that calls reset (nil: ignored) each time
// the guest pulses the CPU reset line. Linux pulses up to ten times before
// trying another method, so the VMM must treat a repeat as the same
// request; it runs on the vCPU goroutine and must not block.
func NewI8042(reset func()) *I8042 {
	k := &I8042{reset: reset}
	k.resetLocked()
	return k
}

// Reset puts the controller in its power-on state, as on a guest reboot.
func (k *I8042) Reset() {
	k.mu.Lock()
	k.resetLocked()
	k.mu.Unlock()
}

// Dropped is the number of bytes the guest sent to a keyboard or mouse
// that is not there.
func (k *I8042) Dropped() uint64 { return k.dropped.Load() }

func (k *I8042) resetLocked() {
	k.ctr = i8042CTRDefault
	k.outp = i8042OutDefault
	k.lastCmd = false
	k.pending = 0
	k.last = 0
	k.qHead, k.qLen = 0, 0
}

// Read is a guest read of the data port (offset 0) or the status register
// (offset 4). The rest of the window reads 0xff.
func (k *I8042) Read(offset uint64, data []byte) {
	k.mu.Lock()
	for i := range data {
		data[i] = k.readLocked(offset + uint64(i))
	}
	k.mu.Unlock()
}

// Write is a guest write to the data port (offset 0) or the command
// register (offset 4).
func (k *I8042) Write(offset uint64, data []byte) {
	pulses := 0
	k.mu.Lock()
	for i, v := range data {
		switch offset + uint64(i) {
		case i8042Data:
			if k.writeDataLocked(v) {
				pulses++
			}
		case i8042Command:
			if k.writeCommandLocked(v) {
				pulses++
			}
		}
	}
	k.mu.Unlock()
	// Called outside the lock: the VMM's reset path may well touch the
	// devices, this one included.
	for ; pulses > 0 && k.reset != nil; pulses-- {
		k.reset()
	}
}

func (k *I8042) readLocked(off uint64) byte {
	switch off {
	case i8042Data:
		if k.qLen > 0 {
			k.last = byte(k.queue[k.qHead])
			k.qHead = (k.qHead + 1) % i8042QueueLen
			k.qLen--
		}
		return k.last
	case i8042Command:
		s := byte(i8042StatUnlock)
		if k.ctr&i8042CTRSys != 0 {
			s |= i8042StatSys
		}
		if k.lastCmd {
			s |= i8042StatCmd
		}
		if k.qLen > 0 {
			s |= i8042StatOBF
			if k.queue[k.qHead]&i8042QAux != 0 {
				s |= i8042StatAuxData
			}
		}
		return s
	}
	return 0xff
}

// writeCommandLocked reports whether the command pulsed the reset line.
func (k *I8042) writeCommandLocked(cmd byte) bool {
	k.lastCmd = true
	k.pending = 0
	switch {
	case cmd == i8042CmdReadCTR:
		k.pushLocked(k.ctr, false)
	case cmd == i8042CmdWriteCTR, cmd == i8042CmdWriteOutput, cmd == i8042CmdWriteKbdOut,
		cmd == i8042CmdWriteAuxOut, cmd == i8042CmdWriteAux:
		k.pending = cmd
	case cmd == i8042CmdAuxDisable:
		k.ctr |= i8042CTRAuxDis
	case cmd == i8042CmdAuxEnable:
		k.ctr &^= i8042CTRAuxDis
	case cmd == i8042CmdKbdDisable:
		k.ctr |= i8042CTRKbdDis
	case cmd == i8042CmdKbdEnable:
		k.ctr &^= i8042CTRKbdDis
	case cmd == i8042CmdSelfTest:
		k.ctr |= i8042CTRSys
		k.pushLocked(i8042SelfTestOK, false)
	case cmd == i8042CmdAuxTest, cmd == i8042CmdKbdTest:
		k.pushLocked(i8042PortTestOK, false)
	case cmd == i8042CmdReadOutput:
		k.pushLocked(k.outp, false)
	case cmd >= i8042CmdPulse:
		// Bits 0-3 select the lines to pulse low, a 0 bit pulsing its
		// line: 0xFE pulses reset, 0xFF is the null command.
		return cmd&i8042OutReset == 0
	}
	// Other commands (controller RAM, input port, vendor extensions) are
	// accepted and ignored.
	return false
}

// writeDataLocked reports whether the byte drove the reset line low.
func (k *I8042) writeDataLocked(v byte) bool {
	k.lastCmd = false
	cmd := k.pending
	k.pending = 0
	switch cmd {
	case i8042CmdWriteCTR:
		k.ctr = v
	case i8042CmdWriteOutput:
		// Bit 0 is the reset line itself: writing it 0 resets the CPU.
		// Linux's real-mode A20 code writes 0xDF here, which does not.
		k.outp = v | i8042OutReset
		return v&i8042OutReset == 0
	case i8042CmdWriteKbdOut:
		k.pushLocked(v, false)
	case i8042CmdWriteAuxOut:
		k.pushLocked(v, true)
	default: // i8042CmdWriteAux, or no command: for a device that is not there
		k.dropped.Add(1)
	}
	return false
}

func (k *I8042) pushLocked(v byte, aux bool) {
	if k.qLen == i8042QueueLen {
		return // a guest issuing commands without reading answers loses the newest
	}
	e := uint16(v)
	if aux {
		e |= i8042QAux
	}
	k.queue[(k.qHead+k.qLen)%i8042QueueLen] = e
	k.qLen++
}
