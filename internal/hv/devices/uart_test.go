package devices

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// uartRig is a UART on COM1 of a port bus, with its output and every
// interrupt level change recorded.
type uartRig struct {
	ports
	u      *UART
	sent   bytes.Buffer
	levels []bool
}

func newUARTRig(t testing.TB, capacity int) *uartRig {
	r := &uartRig{}
	r.u = NewUART(UARTConfig{
		Out:           &r.sent,
		IRQ:           func(level bool) { r.levels = append(r.levels, level) },
		InputCapacity: capacity,
	})
	r.ports = ports{t: t, bus: NewBus(func(f Fault, addr uint64, _ []byte, _ bool) {
		t.Errorf("%v access at %#x", f, addr)
	})}
	if err := r.bus.Register(COM1Port, UARTPortLen, r.u); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *uartRig) reg(off uint64) byte       { return r.in(COM1Port + off) }
func (r *uartRig) setReg(off uint64, v byte) { r.out(COM1Port+off, v) }
func (r *uartRig) level() bool               { return len(r.levels) > 0 && r.levels[len(r.levels)-1] }
func (r *uartRig) rising() (n int) {
	for _, l := range r.levels {
		if l {
			n++
		}
	}
	return n
}

// linuxAutoconfig replays the register accesses of Linux's 8250
// autoconfig() and autoconfig_16550a() (drivers/tty/serial/8250/
// 8250_port.c, with the loopback test and the 16550A variant probes
// enabled) and returns the port type the driver would settle on.
func linuxAutoconfig(r *uartRig) string {
	scratch := r.reg(uartIER)
	r.setReg(uartIER, 0)
	scratch2 := r.reg(uartIER) & 0x0f
	r.setReg(uartIER, 0x0f)
	scratch3 := r.reg(uartIER) & 0x0f
	r.setReg(uartIER, scratch)
	if scratch2 != 0 || scratch3 != 0x0f {
		return "none: IER test failed"
	}
	saveMCR, saveLCR := r.reg(uartMCR), r.reg(uartLCR)
	r.setReg(uartMCR, mcrLoop|mcrOUT2|mcrRTS)
	status := r.reg(uartMSR) & 0xf0
	r.setReg(uartMCR, saveMCR)
	if status != msrDCD|msrCTS {
		return "none: loopback test failed"
	}
	r.setReg(uartLCR, 0xbf) // EFR access on chips that have one
	r.setReg(uartFCR, 0)    // EFR
	r.setReg(uartLCR, 0)
	r.setReg(uartFCR, fcrEnable)
	var typ string
	switch r.reg(uartIIR) >> 6 {
	case 0:
		typ = "8250"
		r.setReg(uartSCR, 0xa5)
		s1 := r.reg(uartSCR)
		r.setReg(uartSCR, 0x5a)
		if s1 == 0xa5 && r.reg(uartSCR) == 0x5a {
			typ = "16450"
		}
	case 1:
		typ = "unknown"
	case 2:
		typ = "16550"
	case 3:
		typ = linux16550A(r)
	}
	r.setReg(uartLCR, saveLCR)
	r.setReg(uartMCR, saveMCR)
	r.setReg(uartFCR, fcrEnable) // serial8250_clear_fifos
	r.setReg(uartFCR, fcrEnable|fcrClearRx|0x04)
	r.setReg(uartFCR, 0)
	r.reg(uartRBR)
	r.setReg(uartIER, 0)
	return typ
}

func linux16550A(r *uartRig) string {
	r.setReg(uartLCR, lcrDLAB)
	if r.reg(uartIIR) == 0 { // EFR reads 0 with DLAB on an ST16C650V1
		return "16650 or Motorola"
	}
	r.setReg(uartLCR, 0xbf)
	if r.reg(uartIIR) == 0 {
		return "16650V2/16850/16654"
	}
	// National Semiconductor SuperIO: bank 2's EXCR1 mirrors MCR.LOOP.
	r.setReg(uartLCR, 0)
	s1 := r.reg(uartMCR)
	r.setReg(uartLCR, 0xe0)
	s2 := r.reg(uartIIR)
	if (s2^s1)&mcrLoop == 0 {
		r.setReg(uartLCR, 0)
		r.setReg(uartMCR, s1^mcrLoop)
		r.setReg(uartLCR, 0xe0)
		s2 = r.reg(uartIIR)
		r.setReg(uartLCR, 0)
		r.setReg(uartMCR, s1)
		if (s2^s1)&mcrLoop != 0 {
			return "NS16550A"
		}
	}
	// TI16750: IIR bit 5 follows the 64-byte FIFO bit only with DLAB set.
	r.setReg(uartLCR, 0)
	r.setReg(uartFCR, fcrEnable|0x20)
	st1 := r.reg(uartIIR) & 0xe0
	r.setReg(uartFCR, fcrEnable)
	r.setReg(uartLCR, lcrDLAB)
	r.setReg(uartFCR, fcrEnable|0x20)
	st2 := r.reg(uartIIR) & 0xe0
	r.setReg(uartFCR, fcrEnable)
	r.setReg(uartLCR, 0)
	if st1 == 0xc0 && st2 == 0xe0 {
		return "16750"
	}
	// XScale: a writable IER bit 6.
	ier := r.reg(uartIER)
	r.setReg(uartIER, ier&^0x40)
	if r.reg(uartIER)&0x40 == 0 {
		r.setReg(uartIER, ier|0x40)
		if r.reg(uartIER)&0x40 != 0 {
			return "XScale"
		}
	}
	r.setReg(uartIER, ier)
	if linuxSizeFIFO(r) == 64 {
		return "U6_16550A"
	}
	return "16550A"
}

// linuxSizeFIFO is size_fifo(): count what comes back after 256 bytes
// are sent in loopback at the fastest divisor.
func linuxSizeFIFO(r *uartRig) int {
	oldLCR := r.reg(uartLCR)
	r.setReg(uartLCR, 0)
	oldFCR := r.reg(uartIIR)
	oldMCR := r.reg(uartMCR)
	r.setReg(uartFCR, fcrEnable|fcrClearRx|0x04)
	r.setReg(uartMCR, mcrLoop)
	r.setReg(uartLCR, lcrDLAB)
	oldDLL, oldDLM := r.reg(uartDLL), r.reg(uartDLM)
	r.setReg(uartDLL, 1)
	r.setReg(uartDLM, 0)
	r.setReg(uartLCR, 0x03)
	for i := range 256 {
		r.setReg(uartTHR, byte(i))
	}
	n := 0
	for ; r.reg(uartLSR)&lsrDR != 0 && n < 256; n++ {
		r.reg(uartRBR)
	}
	r.setReg(uartFCR, oldFCR)
	r.setReg(uartMCR, oldMCR)
	r.setReg(uartLCR, lcrDLAB)
	r.setReg(uartDLL, oldDLL)
	r.setReg(uartDLM, oldDLM)
	r.setReg(uartLCR, oldLCR)
	return n
}

func TestUARTLinuxAutoconfigSees16550A(t *testing.T) {
	r := newUARTRig(t, 0)
	r.setReg(uartSCR, 0x3c)
	if got := linuxAutoconfig(r); got != "16550A" {
		t.Fatalf("Linux autoconfig would see %q, want 16550A", got)
	}
	// The scratch register holds what it is given and the probe left it
	// alone; the probes sent nothing to the console (loopback only).
	if r.reg(uartSCR) != 0x3c {
		t.Errorf("scratch = %#x, want 0x3c", r.reg(uartSCR))
	}
	for _, v := range []byte{0xa5, 0x5a, 0} {
		r.setReg(uartSCR, v)
		if got := r.reg(uartSCR); got != v {
			t.Errorf("scratch wrote %#x, read %#x", v, got)
		}
	}
	if r.sent.Len() != 0 {
		t.Errorf("probe transmitted % x", r.sent.Bytes())
	}
	if r.level() {
		t.Error("interrupt line left high after probing")
	}
}

// linuxStartup replays serial8250_do_startup and the set_termios that
// follows open(2), and reports the workarounds the driver would enable.
func linuxStartup(r *uartRig) (bugTHRE, bugTXEN, noUART bool) {
	r.setReg(uartFCR, fcrEnable)
	r.setReg(uartFCR, fcrEnable|fcrClearRx|0x04)
	r.setReg(uartFCR, 0)
	r.reg(uartLSR)
	r.reg(uartRBR)
	r.reg(uartIIR)
	r.reg(uartMSR)
	if r.reg(uartLSR) == 0xff {
		return false, false, true
	}
	// A real 16550 reasserts THRE whenever ETBEI is re-enabled.
	r.setReg(uartIER, ierTHRE)
	iir1 := r.reg(uartIIR)
	r.setReg(uartIER, 0)
	r.setReg(uartIER, ierTHRE)
	iir := r.reg(uartIIR)
	r.setReg(uartIER, 0)
	bugTHRE = iir1&iirNoInt == 0 && iir&iirNoInt != 0

	r.setReg(uartLCR, 0x03)
	r.setReg(uartMCR, mcrOUT2|mcrRTS|mcrDTR)
	r.setReg(uartIER, ierTHRE)
	lsr := r.reg(uartLSR)
	iir = r.reg(uartIIR)
	r.setReg(uartIER, 0)
	bugTXEN = lsr&lsrTEMT != 0 && iir&iirNoInt != 0
	r.reg(uartLSR)
	r.reg(uartRBR)
	r.reg(uartIIR)
	r.reg(uartMSR)

	// set_termios: 115200 8N1, FIFOs on, receive interrupts on.
	r.setReg(uartLCR, 0x83)
	r.setReg(uartDLL, 1)
	r.setReg(uartDLM, 0)
	r.setReg(uartLCR, 0x03)
	r.setReg(uartFCR, fcrEnable|0x80)
	r.setReg(uartIER, ierRLS|ierRDA)
	return bugTHRE, bugTXEN, false
}

func TestUARTLinuxStartupNeedsNoWorkarounds(t *testing.T) {
	r := newUARTRig(t, 0)
	linuxAutoconfig(r)
	bugTHRE, bugTXEN, noUART := linuxStartup(r)
	if noUART || bugTHRE || bugTXEN {
		t.Fatalf("startup: LSR safety check engaged %v, UART_BUG_THRE %v, UART_BUG_TXEN %v; want none", noUART, bugTHRE, bugTXEN)
	}
	if got := r.reg(uartIIR); got != iirFIFO|iirNoInt {
		t.Errorf("idle IIR after startup = %#x, want 0xc1", got)
	}
}

// linuxDriver is serial8250's interrupt-driven path for one port: start
// transmitting by enabling ETBEI, and an interrupt handler that reads IIR
// until nothing is pending (serial8250_interrupt's loop), draining input
// and refilling up to 16 bytes of output each time.
type linuxDriver struct {
	r     *uartRig
	ier   byte
	tx    []byte
	rx    []byte
	calls int
}

func (d *linuxDriver) write(p []byte) {
	d.tx = append(d.tx, p...)
	if d.ier&ierTHRE == 0 {
		d.ier |= ierTHRE
		d.r.setReg(uartIER, d.ier)
	}
}

func (d *linuxDriver) interrupt() {
	d.calls++
	for range 512 {
		if d.r.reg(uartIIR)&iirNoInt != 0 {
			return
		}
		lsr := d.r.reg(uartLSR)
		for n := 0; lsr&lsrDR != 0 && n < 256; n++ {
			d.rx = append(d.rx, d.r.reg(uartRBR))
			lsr = d.r.reg(uartLSR)
		}
		d.r.reg(uartMSR)
		if lsr&lsrTHRE != 0 && d.ier&ierTHRE != 0 {
			n := min(16, len(d.tx))
			for _, c := range d.tx[:n] {
				d.r.setReg(uartTHR, c)
			}
			d.tx = d.tx[n:]
			if len(d.tx) == 0 {
				d.ier &^= ierTHRE
				d.r.setReg(uartIER, d.ier)
			}
		}
	}
	d.r.t.Fatal("interrupt handler never saw IIR clear")
}

// deliver plays the edge-triggered interrupt controller: every rising
// edge since the last call runs the handler once.
func (d *linuxDriver) deliver(seen *int) {
	for *seen < d.r.rising() {
		*seen++
		d.interrupt()
	}
}

// TestUARTEdgeTriggeredLinuxDriverLosesNothing runs the driver against
// random interleavings of host input and guest output with interrupts
// delivered only on rising edges, as a KVM irqfd on ISA IRQ 4 does: every
// byte must arrive both ways, in order, and the line must end low.
func TestUARTEdgeTriggeredLinuxDriverLosesNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 50 {
		r := newUARTRig(t, 0)
		linuxAutoconfig(r)
		linuxStartup(r)
		d := &linuxDriver{r: r, ier: ierRLS | ierRDA}
		seen := r.rising()
		var wantIn, wantOut []byte
		for range 40 {
			p := make([]byte, 1+rng.IntN(100))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			if rng.IntN(2) == 0 {
				r.u.Enqueue(p)
				wantIn = append(wantIn, p...)
			} else {
				d.write(p)
				wantOut = append(wantOut, p...)
			}
			if rng.IntN(3) > 0 {
				d.deliver(&seen)
			}
		}
		d.deliver(&seen)
		if !bytes.Equal(d.rx, wantIn) {
			t.Fatalf("round %d: guest received %d bytes, host sent %d (or out of order)", round, len(d.rx), len(wantIn))
		}
		if !bytes.Equal(r.sent.Bytes(), wantOut) {
			t.Fatalf("round %d: host received %d bytes, guest sent %d (or out of order)", round, r.sent.Len(), len(wantOut))
		}
		if r.level() {
			t.Fatalf("round %d: interrupt line high with nothing pending", round)
		}
	}
}

// TestUARTBurstIsOneEdge: the level is evaluated per access, so a
// 16-byte THR burst makes one rising edge, not sixteen irqfd writes.
func TestUARTBurstIsOneEdge(t *testing.T) {
	r := newUARTRig(t, 0)
	r.setReg(uartMCR, mcrOUT2)
	r.setReg(uartIER, ierTHRE)
	if r.rising() != 1 || r.reg(uartIIR) != iirTHRE { // the read acknowledges THRE
		t.Fatalf("enable ETBEI: %d edges, want 1", r.rising())
	}
	for i := range 16 {
		r.setReg(uartTHR, byte('a'+i))
	}
	if r.rising() != 2 {
		t.Fatalf("16-byte burst: %d rising edges in all, want 2", r.rising())
	}
	if r.sent.String() != "abcdefghijklmnop" {
		t.Errorf("output %q", r.sent.String())
	}
}

func TestUARTOutputInOrder(t *testing.T) {
	r := newUARTRig(t, 0)
	msg := []byte("[    0.000000] Linux version 6.12.0-azote\r\n")
	for _, c := range msg {
		if r.reg(uartLSR)&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
			t.Fatal("transmitter not empty")
		}
		r.setReg(uartTHR, c)
	}
	if !bytes.Equal(r.sent.Bytes(), msg) {
		t.Fatalf("output %q, want %q", r.sent.Bytes(), msg)
	}
	if s := r.u.Stats(); s.TxBytes != uint64(len(msg)) || s.TxErrors != 0 {
		t.Errorf("stats %+v", s)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("console log closed") }

func TestUARTOutputErrorsAreCounted(t *testing.T) {
	u := NewUART(UARTConfig{Out: failingWriter{}})
	u.Write(uartTHR, []byte{'x'})
	u.Write(uartTHR, []byte{'y'})
	if s := u.Stats(); s.TxErrors != 2 || s.TxBytes != 0 {
		t.Fatalf("stats %+v, want 2 errors", s)
	}
}

func TestUARTDivisorLatch(t *testing.T) {
	r := newUARTRig(t, 0)
	r.setReg(uartLCR, lcrDLAB|0x03)
	if dll, dlm := r.reg(uartDLL), r.reg(uartDLM); dll != defaultDivisor || dlm != 0 {
		t.Fatalf("power-on divisor %#x %#x, want 12 0", dll, dlm)
	}
	r.setReg(uartDLL, 0x01)
	r.setReg(uartDLM, 0x80)
	if dll, dlm := r.reg(uartDLL), r.reg(uartDLM); dll != 0x01 || dlm != 0x80 {
		t.Fatalf("divisor read back %#x %#x, want 0x01 0x80", dll, dlm)
	}
	// With DLAB set, offsets 0 and 1 never reach THR or IER...
	if r.sent.Len() != 0 || r.u.ier != 0 {
		t.Fatalf("DLAB writes leaked: output %q, IER %#x", r.sent.Bytes(), r.u.ier)
	}
	// ...and with it clear they do, leaving the divisor alone.
	r.setReg(uartLCR, 0x03)
	r.setReg(uartTHR, 'z')
	r.setReg(uartIER, ierRDA)
	if r.sent.String() != "z" || r.reg(uartIER) != ierRDA {
		t.Fatalf("after DLAB off: output %q, IER %#x", r.sent.Bytes(), r.reg(uartIER))
	}
	r.setReg(uartLCR, lcrDLAB|0x03)
	if dll, dlm := r.reg(uartDLL), r.reg(uartDLM); dll != 0x01 || dlm != 0x80 {
		t.Errorf("divisor changed to %#x %#x", dll, dlm)
	}
	if r.reg(uartLCR) != lcrDLAB|0x03 {
		t.Errorf("LCR = %#x", r.reg(uartLCR))
	}
}

func TestUARTInputInterrupt(t *testing.T) {
	r := newUARTRig(t, 0)
	r.setReg(uartFCR, fcrEnable)

	// Input with receive interrupts disabled: data ready, no interrupt.
	r.u.Enqueue([]byte("ab"))
	if r.reg(uartLSR)&lsrDR == 0 {
		t.Fatal("LSR.DR clear with input queued")
	}
	if len(r.levels) != 0 || r.reg(uartIIR) != iirFIFO|iirNoInt {
		t.Fatalf("interrupt without IER: levels %v", r.levels)
	}
	// Enabled in IER but OUT2 closed: pending in IIR, line still low.
	r.setReg(uartIER, ierRDA)
	if r.reg(uartIIR) != iirFIFO|iirRDA || len(r.levels) != 0 {
		t.Fatalf("OUT2 clear: IIR %#x levels %v", r.reg(uartIIR), r.levels)
	}
	// OUT2 opens the gate: the line rises.
	r.setReg(uartMCR, mcrOUT2|mcrRTS|mcrDTR)
	if !r.level() || r.rising() != 1 {
		t.Fatalf("OUT2 set: levels %v, want one rise", r.levels)
	}
	// Reading IIR does not acknowledge received data; reading it does.
	r.reg(uartIIR)
	if !r.level() {
		t.Fatal("IIR read dropped a data-available interrupt")
	}
	if a, b := r.reg(uartRBR), r.reg(uartRBR); a != 'a' || b != 'b' {
		t.Fatalf("read %q %q", a, b)
	}
	if r.level() || r.reg(uartLSR)&lsrDR != 0 || r.reg(uartIIR) != iirFIFO|iirNoInt {
		t.Fatalf("after draining: levels %v", r.levels)
	}
	// New input makes a new edge.
	r.u.Enqueue([]byte("c"))
	if r.rising() != 2 {
		t.Fatalf("second input: levels %v", r.levels)
	}
	// Disabling the source in IER drops the line even with data queued.
	r.setReg(uartIER, 0)
	if r.level() {
		t.Fatal("line high after IER cleared")
	}
	if r.reg(uartRBR) != 'c' {
		t.Fatal("queued byte lost")
	}
	if r.reg(uartRBR) != 0 {
		t.Error("empty receiver should read 0")
	}
}

func TestUARTTHREInterrupt(t *testing.T) {
	r := newUARTRig(t, 0)
	r.setReg(uartMCR, mcrOUT2)
	r.setReg(uartIER, ierTHRE)
	if !r.level() || r.reg(uartIIR) != iirTHRE {
		t.Fatal("enabling ETBEI with THR empty must raise THRE")
	}
	if r.level() || r.reg(uartIIR) != iirNoInt {
		t.Fatal("IIR read must acknowledge THRE")
	}
	r.setReg(uartTHR, 'x')
	if !r.level() {
		t.Fatal("THR write must raise THRE again once the byte is out")
	}
	r.setReg(uartIER, 0)
	if r.level() {
		t.Fatal("disabling ETBEI must drop THRE")
	}
	r.setReg(uartIER, ierTHRE)
	if !r.level() {
		t.Fatal("re-enabling ETBEI must reassert THRE")
	}
	// Received data outranks THRE; THRE is still there once it is read.
	r.setReg(uartIER, ierTHRE|ierRDA)
	r.u.Enqueue([]byte{1})
	if r.reg(uartIIR) != iirRDA {
		t.Fatal("RDA must take priority over THRE")
	}
	r.reg(uartRBR)
	if r.reg(uartIIR) != iirTHRE {
		t.Fatal("THRE lost behind RDA")
	}
}

func TestUARTLoopback(t *testing.T) {
	r := newUARTRig(t, 0)
	r.setReg(uartIER, ierRDA|ierMS)
	for _, c := range []struct{ mcr, msrLines byte }{
		{mcrLoop, 0},
		{mcrLoop | mcrRTS, msrCTS},
		{mcrLoop | mcrDTR, msrDSR},
		{mcrLoop | mcrOUT1, msrRI},
		{mcrLoop | mcrOUT2, msrDCD},
		{mcrLoop | mcrOUT2 | mcrRTS, msrDCD | msrCTS}, // what autoconfig checks
		{mcrLoop | 0x0f, 0xf0},
	} {
		r.setReg(uartMCR, c.mcr)
		if got := r.reg(uartMSR) & 0xf0; got != c.msrLines {
			t.Errorf("MCR %#x: MSR lines %#x, want %#x", c.mcr, got, c.msrLines)
		}
	}
	// Out of loopback the far end is there: CTS, DSR, DCD. From all four
	// looped lines up, only RI changes, and it fell: TERI alone.
	r.setReg(uartMCR, 0)
	if got := r.reg(uartMSR); got != msrCTS|msrDSR|msrDCD|msrTERI {
		t.Errorf("MSR after leaving loopback %#x", got)
	}
	if got := r.reg(uartMSR); got != msrCTS|msrDSR|msrDCD {
		t.Errorf("MSR read must clear its deltas: %#x", got)
	}

	// Transmitted bytes come back to the receiver and never reach Out;
	// the interrupt is pending but gated off while looping.
	r.setReg(uartMCR, mcrLoop|mcrOUT2)
	r.setReg(uartTHR, 'L')
	if r.sent.Len() != 0 {
		t.Fatalf("loopback transmitted %q", r.sent.Bytes())
	}
	if r.reg(uartIIR)&iirID != iirRDA || r.level() {
		t.Fatalf("loopback: IIR %#x, line %v", r.reg(uartIIR), r.level())
	}
	if r.reg(uartRBR) != 'L' {
		t.Fatal("looped-back byte lost")
	}
}

func TestUARTInputOverflowIsDroppedAndCounted(t *testing.T) {
	r := newUARTRig(t, 8)
	r.setReg(uartMCR, mcrOUT2)
	r.setReg(uartIER, ierRLS)

	done := make(chan int)
	go func() { done <- r.u.Enqueue([]byte("0123456789abcdef")) }()
	var n int
	select {
	case n = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Enqueue blocked on a full FIFO")
	}
	if n != 8 {
		t.Fatalf("Enqueue took %d bytes, want 8", n)
	}
	if s := r.u.Stats(); s.RxBytes != 8 || s.RxDropped != 8 {
		t.Fatalf("stats %+v, want 8 queued, 8 dropped", s)
	}
	// The guest sees an overrun: a line-status interrupt, OE once.
	if r.reg(uartIIR) != iirRLS || !r.level() {
		t.Fatalf("overrun: IIR %#x", r.reg(uartIIR))
	}
	if lsr := r.reg(uartLSR); lsr&(lsrOE|lsrDR) != lsrOE|lsrDR {
		t.Fatalf("LSR %#x, want OE|DR", lsr)
	}
	if r.reg(uartLSR)&lsrOE != 0 || r.level() {
		t.Fatal("LSR read must clear OE and its interrupt")
	}
	if r.u.Enqueue([]byte("x")) != 0 {
		t.Fatal("full FIFO took a byte")
	}
	// What was taken arrives intact, and the ring wraps cleanly.
	got := make([]byte, 0, 16)
	for range 5 {
		got = append(got, r.reg(uartRBR))
	}
	if r.u.Enqueue([]byte("ABCDE")) != 5 {
		t.Fatal("freed space not reused")
	}
	for r.reg(uartLSR)&lsrDR != 0 {
		got = append(got, r.reg(uartRBR))
	}
	if string(got) != "01234567ABCDE" {
		t.Fatalf("guest read %q", got)
	}
}

func TestUARTFIFOControlFlushesInput(t *testing.T) {
	r := newUARTRig(t, 0)
	r.setReg(uartFCR, fcrEnable|0xc0)
	if r.reg(uartIIR) != iirFIFO|iirNoInt {
		t.Fatal("FIFO bits missing from IIR")
	}
	r.u.Enqueue([]byte("stale"))
	r.setReg(uartFCR, fcrEnable|fcrClearRx)
	if r.reg(uartLSR)&lsrDR != 0 {
		t.Fatal("FCR clear-receiver left data")
	}
	r.u.Enqueue([]byte("old"))
	r.setReg(uartFCR, 0) // leaving FIFO mode clears the FIFOs too
	if r.reg(uartLSR)&lsrDR != 0 || r.reg(uartIIR) != iirNoInt {
		t.Fatal("leaving FIFO mode kept data or FIFO bits")
	}
	if s := r.u.Stats(); s.RxFlushed != 8 {
		t.Errorf("RxFlushed %d, want 8", s.RxFlushed)
	}
	// Without FCR0 the other bits are not written.
	r.setReg(uartFCR, 0xc0)
	if r.reg(uartIIR) != iirNoInt {
		t.Error("FCR written without FCR0")
	}
}

func TestUARTReset(t *testing.T) {
	r := newUARTRig(t, 0)
	r.setReg(uartMCR, mcrOUT2|mcrLoop)
	r.setReg(uartMCR, mcrOUT2)
	r.setReg(uartIER, ierRDA)
	r.u.Enqueue([]byte("left over"))
	if !r.level() {
		t.Fatal("setup: line low")
	}
	r.u.Reset()
	if r.level() {
		t.Fatal("Reset left the line high")
	}
	for off, want := range map[uint64]byte{uartIER: 0, uartIIR: iirNoInt, uartLCR: 0, uartMCR: 0, uartLSR: lsrTHRE | lsrTEMT, uartMSR: msrCTS | msrDSR | msrDCD} {
		if got := r.reg(off); got != want {
			t.Errorf("after Reset register %d = %#x, want %#x", off, got, want)
		}
	}
}

// TestUARTConcurrentInput feeds input from a host goroutine while a vCPU
// goroutine polls it out, as the console reader and the guest do; under
// -race it checks the locking, and every byte taken arrives in order.
func TestUARTConcurrentInput(t *testing.T) {
	u := NewUART(UARTConfig{InputCapacity: 64, IRQ: func(bool) {}})
	const total = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var b [1]byte
		for i := 0; i < total; {
			b[0] = byte(i)
			if u.Enqueue(b[:]) == 1 {
				i++
			} else {
				time.Sleep(time.Microsecond)
			}
		}
	}()
	var lsr, v [1]byte
	for want := 0; want < total; {
		u.Read(uartLSR, lsr[:])
		if lsr[0]&lsrDR == 0 {
			continue
		}
		u.Read(uartRBR, v[:])
		if v[0] != byte(want) {
			t.Fatalf("byte %d = %d", want, v[0])
		}
		want++
	}
	wg.Wait()
}

// TestUARTNoAllocs: the console path allocates nothing per access.
func TestUARTNoAllocs(t *testing.T) {
	r := newUARTRig(t, 0)
	r.u = NewUART(UARTConfig{IRQ: func(bool) {}})
	r.bus = NewBus(nil)
	if err := r.bus.Register(COM1Port, UARTPortLen, r.u); err != nil {
		t.Fatal(err)
	}
	thr, lsr := []byte{'x'}, []byte{0}
	in := []byte("k")
	allocs := testing.AllocsPerRun(1000, func() {
		r.bus.Read(COM1Port+uartLSR, lsr)
		r.bus.Write(COM1Port+uartTHR, thr)
		r.u.Enqueue(in)
		r.bus.Read(COM1Port+uartRBR, lsr)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per access", allocs)
	}
}

func TestRisingEdge(t *testing.T) {
	n := 0
	f := RisingEdge(func() { n++ })
	for _, l := range []bool{true, false, true, false} {
		f(l)
	}
	if n != 2 {
		t.Fatalf("fired %d times, want 2", n)
	}
}
