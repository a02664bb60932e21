package devices

import (
	"testing"
	"time"
)

// A fuzz program is a list of 3-byte operations on one UART:
//
//	byte 0: bits 0-1 the kind (read, write, enqueue, reset), bits 2-5 the
//	        offset (0-15: past the 8-register window too, as a buggy
//	        caller might pass), bits 6-7 the size (1, 2, 4 or 8 bytes)
//	byte 1: the value written (incremented per byte), or the byte enqueued
//	byte 2: how many bytes to enqueue (mod 64, against a 32-byte FIFO)
const (
	fuzzRead = iota
	fuzzWrite
	fuzzEnqueue
	fuzzReset
)

var fuzzSizes = [4]int{1, 2, 4, 8}

func fuzzOp(kind int, off uint64, size int, v, n byte) []byte {
	si := 0
	for i, s := range fuzzSizes {
		if s == size {
			si = i
		}
	}
	return []byte{byte(kind) | byte(off&0xf)<<2 | byte(si)<<6, v, n}
}

// tap records the accesses a test makes, as a fuzz program.
type tap struct {
	d   Device
	ops []byte
}

func (t *tap) Read(off uint64, data []byte) {
	t.ops = append(t.ops, fuzzOp(fuzzRead, off, len(data), 0, 0)...)
	t.d.Read(off, data)
}

func (t *tap) Write(off uint64, data []byte) {
	t.ops = append(t.ops, fuzzOp(fuzzWrite, off, len(data), data[0], 0)...)
	t.d.Write(off, data)
}

// linuxSeed is the register traffic of Linux's probe and open.
func linuxSeed(tb testing.TB) []byte {
	r := newUARTRig(tb, 0)
	tp := &tap{d: r.u}
	r.bus = NewBus(nil)
	if err := r.bus.Register(COM1Port, UARTPortLen, tp); err != nil {
		tb.Fatal(err)
	}
	linuxAutoconfig(r)
	linuxStartup(r)
	return tp.ops
}

func FuzzUART(f *testing.F) {
	f.Add(linuxSeed(f))
	var input []byte
	input = append(input, fuzzOp(fuzzWrite, uartMCR, 1, mcrOUT2, 0)...)
	input = append(input, fuzzOp(fuzzWrite, uartIER, 1, ierRDA|ierRLS|ierTHRE, 0)...)
	input = append(input, fuzzOp(fuzzEnqueue, 0, 1, 'q', 40)...)
	input = append(input, fuzzOp(fuzzRead, uartIIR, 1, 0, 0)...)
	input = append(input, fuzzOp(fuzzRead, uartLSR, 1, 0, 0)...)
	input = append(input, fuzzOp(fuzzRead, uartRBR, 8, 0, 0)...)
	input = append(input, fuzzOp(fuzzWrite, uartTHR, 1, 'x', 0)...)
	f.Add(input)
	var dlab []byte
	dlab = append(dlab, fuzzOp(fuzzWrite, uartLCR, 1, lcrDLAB, 0)...)
	dlab = append(dlab, fuzzOp(fuzzWrite, uartDLL, 2, 0x01, 0)...)
	dlab = append(dlab, fuzzOp(fuzzRead, uartDLL, 8, 0, 0)...)
	dlab = append(dlab, fuzzOp(fuzzWrite, 6, 4, 0xff, 0)...)
	dlab = append(dlab, fuzzOp(fuzzWrite, uartMCR, 1, mcrLoop|0x0f, 0)...)
	dlab = append(dlab, fuzzOp(fuzzWrite, uartLCR, 1, 0, 0)...)
	dlab = append(dlab, fuzzOp(fuzzWrite, uartTHR, 1, 'l', 0)...)
	dlab = append(dlab, fuzzOp(fuzzReset, 0, 1, 0, 0)...)
	f.Add(dlab)

	f.Fuzz(func(t *testing.T, prog []byte) {
		var levels []bool
		var out countWriter
		u := NewUART(UARTConfig{
			Out:           &out,
			IRQ:           func(l bool) { levels = append(levels, l) },
			InputCapacity: 32,
		})
		var buf [8]byte
		for len(prog) >= 3 {
			op, v, n := prog[0], prog[1], prog[2]
			prog = prog[3:]
			off := uint64(op>>2) & 0xf
			data := buf[:fuzzSizes[op>>6]]
			switch int(op & 3) {
			case fuzzRead:
				u.Read(off, data)
			case fuzzWrite:
				for i := range data {
					data[i] = v + byte(i)
				}
				u.Write(off, data)
			case fuzzEnqueue:
				in := make([]byte, n%64)
				for i := range in {
					in[i] = v
				}
				if got := u.Enqueue(in); got > len(in) {
					t.Fatalf("Enqueue took %d of %d", got, len(in))
				}
			case fuzzReset:
				u.Reset()
			}
			checkUART(t, u, levels)
		}
		if s := u.Stats(); s.TxBytes != out.n {
			t.Fatalf("TxBytes %d, writer saw %d", s.TxBytes, out.n)
		}
	})
}

type countWriter struct{ n uint64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += uint64(len(p)); return len(p), nil }

// checkUART asserts what must hold after any register sequence.
func checkUART(t *testing.T, u *UART, levels []bool) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.rxLen < 0 || u.rxLen > len(u.rx) || u.rxHead < 0 || u.rxHead >= len(u.rx) {
		t.Fatalf("receive ring broken: head %d len %d cap %d", u.rxHead, u.rxLen, len(u.rx))
	}
	if u.ier&^ierMask != 0 || u.mcr&^mcrMask != 0 || u.fcr&^(fcrEnable|fcrTrigger) != 0 {
		t.Fatalf("reserved bits set: IER %#x MCR %#x FCR %#x", u.ier, u.mcr, u.fcr)
	}
	if u.thrPending && u.ier&ierTHRE == 0 {
		t.Fatal("THRE pending with ETBEI clear")
	}
	if iir := u.iirLocked(); iir&0x30 != 0 || (iir&iirFIFO != 0) != (u.fcr&fcrEnable != 0) {
		t.Fatalf("IIR %#x with FCR %#x", iir, u.fcr)
	}
	// Reported levels alternate, start with a rise, and end where the
	// registers say the line is.
	for i, l := range levels {
		if l == (i%2 == 1) {
			t.Fatalf("level reports %v do not alternate", levels)
		}
	}
	want := u.mcr&(mcrOUT2|mcrLoop) == mcrOUT2 && u.iirLocked()&iirNoInt == 0
	if got := len(levels) > 0 && levels[len(levels)-1]; got != want {
		t.Fatalf("line reported %v, registers say %v", got, want)
	}
}

// FuzzPortBus throws arbitrary port accesses at the whole port map as
// azote-hv wires it. Nothing may panic, and the power registers must
// power off or reset exactly when a delivered byte asks them to.
func FuzzPortBus(f *testing.F) {
	f.Add([]byte{0x01, 0x00, 0x06, SleepControlS5})      // S5
	f.Add([]byte{0x01, 0x02, 0x06, ResetValue})          // reset register
	f.Add([]byte{0x41, 0x01, 0x06, 0x00})                // 2 bytes at 0x601: WAK_STS, then reset value
	f.Add([]byte{0x81, 0xfe, 0x05, 0x00})                // 4 bytes straddling into the power block
	f.Add([]byte{0x01, 0x64, 0x00, 0xfe, 0x00, 0x64, 0}) // i8042 reset pulse, status read
	f.Add([]byte{0x01, 0xfb, 0x03, 0x80, 0x41, 0xf8, 0x03, 0x01, 0xc0, 0xf8, 0x03, 0})
	f.Add([]byte{0x01, 0x08, 0x06, BootMarkerMagic})
	f.Fuzz(func(t *testing.T, prog []byte) {
		var offs, resets, wantOffs, wantResets int
		bus := NewBus(nil)
		for _, r := range []struct {
			base, size uint64
			d          Device
		}{
			{COM1Port, UARTPortLen, NewUART(UARTConfig{InputCapacity: 16})},
			{COM2Port, UARTPortLen, NewUART(UARTConfig{InputCapacity: 16})},
			{I8042Port, I8042PortLen, NewI8042(func() {})},
			{PowerPort, PowerPortLen, NewPower(func() { offs++ }, func() { resets++ })},
			{BootMarkerPort, BootMarkerPortLen, NewBootMarker(time.Now(), nil)},
		} {
			if err := bus.Register(r.base, r.size, r.d); err != nil {
				t.Fatal(err)
			}
		}
		var buf [8]byte
		for len(prog) >= 4 {
			op := prog[0]
			port := uint64(prog[1]) | uint64(prog[2]&7)<<8
			v := prog[3]
			prog = prog[4:]
			data := buf[:fuzzSizes[op>>6]]
			if op&1 == 0 {
				bus.Read(port, data)
				continue
			}
			for i := range data {
				data[i] = v + byte(i)
			}
			if port >= PowerPort && port+uint64(len(data)) <= PowerPort+PowerPortLen {
				for i, b := range data {
					switch port + uint64(i) {
					case SleepControlPort:
						if b&(SleepTypeMask|SleepEnable) == SleepControlS5 {
							wantOffs++
						}
					case ResetPort:
						if b == ResetValue {
							wantResets++
						}
					}
				}
			}
			bus.Write(port, data)
		}
		if offs != wantOffs || resets != wantResets {
			t.Fatalf("power-offs %d resets %d, want %d %d", offs, resets, wantOffs, wantResets)
		}
	})
}
