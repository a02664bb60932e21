package devices

import (
	"io"
	"sync"
	"sync/atomic"
)

// Register offsets of the 16550A (PC16550D datasheet, table II). Offsets
// 0 and 1 are the divisor latch while LCR.DLAB is set.
const (
	uartRBR = 0 // read: receiver buffer
	uartTHR = 0 // write: transmitter holding
	uartDLL = 0 // DLAB: divisor latch, low byte
	uartIER = 1 // interrupt enable
	uartDLM = 1 // DLAB: divisor latch, high byte
	uartIIR = 2 // read: interrupt identification
	uartFCR = 2 // write: FIFO control
	uartLCR = 3 // line control
	uartMCR = 4 // modem control
	uartLSR = 5 // line status
	uartMSR = 6 // modem status
	uartSCR = 7 // scratch
)

// Register bits.
const (
	ierRDA  = 0x01 // ERBFI: received data available
	ierTHRE = 0x02 // ETBEI: transmitter holding register empty
	ierRLS  = 0x04 // ELSI: receiver line status
	ierMS   = 0x08 // EDSSI: modem status
	ierMask = 0x0f // bits 4-7 read 0 on a 16550A; Linux takes a writable bit 6 for an XScale

	iirNoInt = 0x01 // no interrupt pending
	iirMS    = 0x00
	iirTHRE  = 0x02
	iirRDA   = 0x04
	iirRLS   = 0x06
	iirID    = 0x0f // the identification bits, FIFO bits aside
	iirFIFO  = 0xc0 // FIFOs enabled: what makes Linux say "16550A"

	fcrEnable  = 0x01
	fcrClearRx = 0x02
	fcrTrigger = 0xc0 // receiver trigger level, kept for reading back the state

	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f

	lsrDR   = 0x01
	lsrOE   = 0x02
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	msrDCTS = 0x01
	msrDDSR = 0x02
	msrTERI = 0x04
	msrDDCD = 0x08
	msrCTS  = 0x10
	msrDSR  = 0x20
	msrRI   = 0x40
	msrDCD  = 0x80
)

// defaultDivisor is 9600 baud from the PC's 1.8432 MHz clock. The value
// means nothing here, bytes move at once, but it is what a driver reads
// back before it programs its own.
const defaultDivisor = 12

// DefaultInputCapacity is the input FIFO of a UART whose config leaves it
// zero: far more than the 16 bytes of a real 16550A, so a burst from the
// host is not lost while the guest is busy, and small enough to be no
// memory concern.
const DefaultInputCapacity = 16 << 10

// UARTConfig wires a UART to the host.
type UARTConfig struct {
	// Out receives the bytes the guest transmits, one Write per byte, on
	// the vCPU goroutine. It must not block: the console log is a bounded
	// ring, the agent stream a bounded buffer the VMM drains. A failed
	// write is counted; a serial line has no way to tell the guest. Nil
	// discards.
	Out io.Writer

	// IRQ is told each change of the UART's interrupt output (see UART).
	// It is called with the UART's lock held, so levels arrive in order;
	// it must not block and must not call back into the UART. Nil: the
	// guest can only poll.
	IRQ func(level bool)

	// InputCapacity bounds the bytes queued for the guest to read;
	// DefaultInputCapacity when zero or negative.
	InputCapacity int
}

// UARTStats are a UART's counters since it was made.
type UARTStats struct {
	TxBytes   uint64 // bytes the guest transmitted and Out took
	TxErrors  uint64 // bytes Out refused
	RxBytes   uint64 // bytes Enqueue queued for the guest
	RxDropped uint64 // bytes dropped because the input FIFO was full
	RxFlushed uint64 // queued bytes the guest discarded (FCR, or Reset)
}

// UART is a 16550A as Linux's 8250 driver probes and drives it: the
// divisor latch, scratch register, loopback mode and FIFO-enabled IIR
// bits that make autoconfig report a 16550A, and the THRE interrupt that
// reasserts when re-enabled (the driver's UART_BUG_THRE test), so the
// driver runs interrupt-driven in both directions and needs no timer.
//
// Bytes move at once: the transmitter is always empty (LSR.THRE and TEMT
// set), a transmitted byte goes straight to Out, and the receiver holds
// what Enqueue queued, up to the configured capacity rather than 16
// bytes. Line settings (divisor, word length, parity) are stored and
// read back but change nothing. Host input is queued even in loopback
// mode, where a real chip's input pin is cut off, so a byte from the
// agent socket is not lost to the driver's momentary probes.
//
// Interrupts. The UART's INTR output is modelled as a level: high while
// an enabled interrupt is pending (IIR bit 0 clear) and the board's OUT2
// gate is open. On a PC the COM port's IRQ passes a buffer enabled by
// MCR.OUT2, which Linux sets whenever it uses the IRQ, and loopback mode
// cuts OUT2 off. The level is evaluated once per register access and
// each change is passed to UARTConfig.IRQ, so a burst of THR writes makes
// one rising edge, not one per byte.
//
// ISA IRQs 3 and 4 are edge-triggered on the in-kernel PIC and IOAPIC,
// and a KVM irqfd injects an edge, so the VMM wires IRQ as
// RisingEdge(irqfd write). That is all Linux needs: its 8250 interrupt
// handler reads IIR again until it says "no interrupt pending", at which
// point the level here is low, and any later condition raises it again,
// which is a new edge. Firecracker fires its irqfd on every THR write and
// every batch of input instead; edges on transitions deliver the same
// interrupts without the redundant ones. A level consumer (KVM_IRQ_LINE,
// or an irqfd with a resample fd on a level-triggered pin) can use the
// level as it is.
type UART struct {
	irq func(level bool)

	txBytes, txErrors, rxBytes, rxDropped, rxFlushed atomic.Uint64

	// outMu orders the bytes given to out. It is taken while mu is still
	// held and mu is released before out.Write, so bytes leave in the
	// order the guest wrote them, yet a slow writer never holds up
	// Enqueue or the other registers.
	outMu sync.Mutex
	out   io.Writer
	obuf  [1]byte

	mu         sync.Mutex
	ier        uint8
	lcr        uint8
	mcr        uint8
	fcr        uint8
	scr        uint8
	dll, dlm   uint8
	lsrErr     uint8 // OE, held until LSR is read
	msrDelta   uint8 // DCTS, DDSR, TERI, DDCD, held until MSR is read
	thrPending bool  // THRE interrupt: set when THR empties, cleared by IIR read or disabling ETBEI
	level      bool  // the INTR level last reported to irq
	rx         []byte
	rxHead     int
	rxLen      int
}

// NewUART returns a UART in its power-on state.
func NewUART(cfg UARTConfig) *UART {
	u := &UART{irq: cfg.IRQ, out: cfg.Out}
	if u.out == nil {
		u.out = io.Discard
	}
	n := cfg.InputCapacity
	if n <= 0 {
		n = DefaultInputCapacity
	}
	u.rx = make([]byte, n)
	u.resetLocked()
	return u
}

// RisingEdge adapts an edge-triggered interrupt, such as a KVM irqfd on
// an ISA IRQ, to UARTConfig.IRQ: fire runs on each rising edge of the
// UART's interrupt output, and falling edges are dropped.
func RisingEdge(fire func()) func(level bool) {
	return func(level bool) {
		if level {
			fire()
		}
	}
}

// Read is a guest read of len(data) registers from offset on; a
// multi-byte access reads consecutive registers, as an 8-bit device on
// the ISA bus answers a wider one.
func (u *UART) Read(offset uint64, data []byte) {
	u.mu.Lock()
	for i := range data {
		data[i] = u.readLocked(offset + uint64(i))
	}
	u.updateIRQLocked()
	u.mu.Unlock()
}

// Write is a guest write of len(data) registers from offset on.
func (u *UART) Write(offset uint64, data []byte) {
	u.mu.Lock()
	var tx byte
	send := false
	for i, v := range data {
		// Offsets only grow along an access, so at most one byte of it
		// lands on THR.
		if u.writeLocked(offset+uint64(i), v) {
			tx, send = v, true
		}
	}
	u.updateIRQLocked()
	if !send {
		u.mu.Unlock()
		return
	}
	u.outMu.Lock()
	u.mu.Unlock()
	u.obuf[0] = tx
	if n, err := u.out.Write(u.obuf[:]); err != nil || n != 1 {
		u.txErrors.Add(1)
	} else {
		u.txBytes.Add(1)
	}
	u.outMu.Unlock()
}

// Enqueue queues p for the guest to read and returns how many bytes it
// took. What does not fit is dropped, counted in RxDropped and shown to
// the guest as an overrun (LSR.OE, and a line-status interrupt if
// enabled), as a real UART does when its FIFO is full. It never waits
// for the guest. Called from the goroutine that reads the console or
// agent socket.
func (u *UART) Enqueue(p []byte) int {
	u.mu.Lock()
	n := min(len(p), len(u.rx)-u.rxLen)
	tail := (u.rxHead + u.rxLen) % len(u.rx)
	c := copy(u.rx[tail:], p[:n])
	copy(u.rx, p[c:n])
	u.rxLen += n
	if n < len(p) {
		u.lsrErr |= lsrOE
		u.rxDropped.Add(uint64(len(p) - n))
	}
	u.rxBytes.Add(uint64(n))
	u.updateIRQLocked()
	u.mu.Unlock()
	return n
}

// Reset puts the UART in its power-on state, as on a guest reboot;
// queued input is discarded and counted in RxFlushed.
func (u *UART) Reset() {
	u.mu.Lock()
	u.flushRxLocked()
	u.resetLocked()
	u.updateIRQLocked()
	u.mu.Unlock()
}

// Stats returns the UART's counters.
func (u *UART) Stats() UARTStats {
	return UARTStats{
		TxBytes:   u.txBytes.Load(),
		TxErrors:  u.txErrors.Load(),
		RxBytes:   u.rxBytes.Load(),
		RxDropped: u.rxDropped.Load(),
		RxFlushed: u.rxFlushed.Load(),
	}
}

// resetLocked sets the registers to the datasheet's master-reset values.
// The reported level is left alone, so the caller's updateIRQLocked
// reports a fall if one was high.
func (u *UART) resetLocked() {
	u.ier, u.lcr, u.mcr, u.fcr, u.scr = 0, 0, 0, 0, 0
	u.dll, u.dlm = defaultDivisor, 0
	u.lsrErr, u.msrDelta = 0, 0
	u.thrPending = false
}

func (u *UART) dlab() bool { return u.lcr&lcrDLAB != 0 }

func (u *UART) readLocked(off uint64) byte {
	switch off {
	case uartRBR:
		if u.dlab() {
			return u.dll
		}
		return u.popLocked()
	case uartIER:
		if u.dlab() {
			return u.dlm
		}
		return u.ier
	case uartIIR:
		iir := u.iirLocked()
		// Reading IIR acknowledges THRE when THRE is what it reports.
		if iir&iirID == iirTHRE {
			u.thrPending = false
		}
		return iir
	case uartLCR:
		return u.lcr
	case uartMCR:
		return u.mcr
	case uartLSR:
		lsr := lsrTHRE | lsrTEMT | u.lsrErr
		if u.rxLen > 0 {
			lsr |= lsrDR
		}
		u.lsrErr = 0
		return lsr
	case uartMSR:
		msr := u.modemLinesLocked() | u.msrDelta
		u.msrDelta = 0
		return msr
	case uartSCR:
		return u.scr
	}
	return 0xff
}

// writeLocked reports whether v is a byte to transmit to Out.
func (u *UART) writeLocked(off uint64, v byte) bool {
	switch off {
	case uartTHR:
		if u.dlab() {
			u.dll = v
			return false
		}
		// The byte leaves at once, so THR is empty again: a THRE
		// interrupt is due if enabled.
		u.thrPending = u.ier&ierTHRE != 0
		if u.mcr&mcrLoop != 0 {
			u.pushLocked(v)
			return false
		}
		return true
	case uartIER:
		if u.dlab() {
			u.dlm = v
			return false
		}
		v &= ierMask
		// Enabling ETBEI while THR is empty raises THRE at once; Linux
		// relies on it to start transmitting and tests for it at open.
		if v&^u.ier&ierTHRE != 0 {
			u.thrPending = true
		}
		if v&ierTHRE == 0 {
			u.thrPending = false
		}
		u.ier = v
	case uartFCR:
		u.writeFCRLocked(v)
	case uartLCR:
		u.lcr = v
	case uartMCR:
		u.writeMCRLocked(v)
	case uartSCR:
		u.scr = v
	}
	// LSR and MSR writes (factory test on real chips) are ignored, as is
	// anything past the window.
	return false
}

func (u *UART) writeFCRLocked(v byte) {
	// Switching between FIFO and 16450 mode clears the FIFOs.
	if (v^u.fcr)&fcrEnable != 0 {
		u.flushRxLocked()
	}
	// The other bits are written only with FCR0 set.
	if v&fcrEnable == 0 {
		u.fcr = 0
		return
	}
	if v&fcrClearRx != 0 {
		u.flushRxLocked()
	}
	// The transmit FIFO is always empty; clearing it (bit 2) is a no-op.
	u.fcr = v & (fcrEnable | fcrTrigger)
}

func (u *UART) writeMCRLocked(v byte) {
	before := u.modemLinesLocked()
	u.mcr = v & mcrMask
	after := u.modemLinesLocked()
	changed := before ^ after
	if changed&msrCTS != 0 {
		u.msrDelta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		u.msrDelta |= msrDDSR
	}
	if changed&msrDCD != 0 {
		u.msrDelta |= msrDDCD
	}
	if before&^after&msrRI != 0 { // trailing edge only
		u.msrDelta |= msrTERI
	}
}

// modemLinesLocked is the MSR's line bits: the far end present and ready
// (CTS, DSR, DCD) normally, and the MCR outputs looped back in loopback
// mode (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD), which autoconfig checks.
func (u *UART) modemLinesLocked() byte {
	if u.mcr&mcrLoop == 0 {
		return msrCTS | msrDSR | msrDCD
	}
	var m byte
	if u.mcr&mcrRTS != 0 {
		m |= msrCTS
	}
	if u.mcr&mcrDTR != 0 {
		m |= msrDSR
	}
	if u.mcr&mcrOUT1 != 0 {
		m |= msrRI
	}
	if u.mcr&mcrOUT2 != 0 {
		m |= msrDCD
	}
	return m
}

// iirLocked is IIR without its read side effect: the highest-priority
// enabled interrupt pending, and the FIFO bits.
func (u *UART) iirLocked() byte {
	id := byte(iirNoInt)
	switch {
	case u.ier&ierRLS != 0 && u.lsrErr != 0:
		id = iirRLS
	case u.ier&ierRDA != 0 && u.rxLen > 0:
		id = iirRDA
	case u.ier&ierTHRE != 0 && u.thrPending:
		id = iirTHRE
	case u.ier&ierMS != 0 && u.msrDelta != 0:
		id = iirMS
	}
	if u.fcr&fcrEnable != 0 {
		id |= iirFIFO
	}
	return id
}

// updateIRQLocked reports a change of the INTR level; called once at the
// end of every access.
func (u *UART) updateIRQLocked() {
	level := u.mcr&(mcrOUT2|mcrLoop) == mcrOUT2 && u.iirLocked()&iirNoInt == 0
	if level == u.level {
		return
	}
	u.level = level
	if u.irq != nil {
		u.irq(level)
	}
}

// pushLocked queues a looped-back byte.
func (u *UART) pushLocked(v byte) {
	if u.rxLen == len(u.rx) {
		u.lsrErr |= lsrOE
		u.rxDropped.Add(1)
		return
	}
	u.rx[(u.rxHead+u.rxLen)%len(u.rx)] = v
	u.rxLen++
}

// popLocked takes the oldest queued byte; an empty receiver reads 0.
func (u *UART) popLocked() byte {
	if u.rxLen == 0 {
		return 0
	}
	v := u.rx[u.rxHead]
	u.rxHead = (u.rxHead + 1) % len(u.rx)
	u.rxLen--
	return v
}

func (u *UART) flushRxLocked() {
	u.rxFlushed.Add(uint64(u.rxLen))
	u.rxHead, u.rxLen = 0, 0
}
