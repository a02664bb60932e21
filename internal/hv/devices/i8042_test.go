package devices

import "testing"

func newI8042Rig(t *testing.T) (*I8042, ports, *int) {
	resets := new(int)
	k := NewI8042(func() { *resets++ })
	p := ports{t: t, bus: NewBus(nil)}
	if err := p.bus.Register(I8042Port, I8042PortLen, k); err != nil {
		t.Fatal(err)
	}
	return k, p, resets
}

const (
	kbdData   = I8042Port + i8042Data
	kbdStatus = I8042Port + i8042Command
)

// TestI8042ResetPulse replays Linux's reboot=k path
// (arch/x86/kernel/reboot.c): wait for the input buffer to empty, then
// write 0xFE to port 0x64.
func TestI8042ResetPulse(t *testing.T) {
	_, p, resets := newI8042Rig(t)
	for i := 0; p.in(kbdStatus)&i8042StatIBF != 0; i++ {
		if i > 0x10000 {
			t.Fatal("kb_wait: input buffer never empties")
		}
	}
	p.out(kbdStatus, 0xfe)
	if *resets != 1 {
		t.Fatalf("0xFE to port 0x64: %d resets, want 1", *resets)
	}
	if p.in(kbdStatus)&i8042StatIBF != 0 {
		t.Fatal("input buffer full after the pulse")
	}

	for _, c := range []struct {
		name  string
		cmd   byte
		data  []byte
		reset bool
	}{
		{"null command 0xFF", 0xff, nil, false},
		{"pulse all lines 0xF0", 0xf0, nil, true},
		{"pulse line 1 only 0xFD", 0xfd, nil, false},
		{"self test", i8042CmdSelfTest, nil, false},
		{"output port, A20 on (Linux's a20.c)", i8042CmdWriteOutput, []byte{0xdf}, false},
		{"output port, reset line low", i8042CmdWriteOutput, []byte{0xfe}, true},
		{"command byte 0xFE is data, not a pulse", i8042CmdWriteCTR, []byte{0xfe}, false},
	} {
		before := *resets
		p.out(kbdStatus, c.cmd)
		for _, v := range c.data {
			p.out(kbdData, v)
		}
		if got := *resets - before; got != map[bool]int{false: 0, true: 1}[c.reset] {
			t.Errorf("%s: %d resets", c.name, got)
		}
	}
}

// TestI8042Commands replays what Linux's i8042 driver does when the
// tables advertise a controller (i8042_controller_check, _init and the
// AUX loop test) and checks every answer.
func TestI8042Commands(t *testing.T) {
	k, p, resets := newI8042Rig(t)

	// i8042_flush: nothing pending at power-on.
	st := p.in(kbdStatus)
	if st&i8042StatOBF != 0 || st == 0xff {
		t.Fatalf("power-on status %#x", st)
	}
	if st&i8042StatSys == 0 {
		t.Error("system flag clear at power-on")
	}

	cmd := func(c byte, data ...byte) {
		p.out(kbdStatus, c)
		for _, v := range data {
			p.out(kbdData, v)
		}
	}
	read := func() (byte, byte) {
		st := p.in(kbdStatus)
		if st&i8042StatOBF == 0 {
			t.Fatal("no answer waiting")
		}
		return p.in(kbdData), st
	}

	cmd(i8042CmdReadCTR)
	if v, _ := read(); v != i8042CTRDefault {
		t.Errorf("CTR %#x, want %#x", v, i8042CTRDefault)
	}
	cmd(i8042CmdWriteCTR, 0x47)
	cmd(i8042CmdReadCTR)
	if v, _ := read(); v != 0x47 {
		t.Errorf("CTR after write %#x, want 0x47", v)
	}
	cmd(i8042CmdSelfTest)
	if v, _ := read(); v != i8042SelfTestOK {
		t.Errorf("self test %#x", v)
	}
	cmd(i8042CmdKbdTest)
	if v, _ := read(); v != i8042PortTestOK {
		t.Errorf("keyboard port test %#x", v)
	}
	cmd(i8042CmdWriteAuxOut, 0x5a)
	if v, st := read(); v != 0x5a || st&i8042StatAuxData == 0 {
		t.Errorf("AUX loop: %#x status %#x", v, st)
	}
	cmd(i8042CmdAuxDisable)
	cmd(i8042CmdReadCTR)
	if v, _ := read(); v&i8042CTRAuxDis == 0 {
		t.Error("0xA7 left the aux port enabled")
	}
	cmd(i8042CmdReadOutput)
	if v, _ := read(); v != i8042OutDefault {
		t.Errorf("output port %#x", v)
	}
	if p.in(kbdStatus)&i8042StatOBF != 0 {
		t.Fatal("output buffer still full")
	}
	// An empty buffer reads the last byte again, as the chip does.
	if p.in(kbdData) != i8042OutDefault {
		t.Error("empty data port did not repeat the last byte")
	}

	// Bytes for a keyboard or mouse that is not there vanish.
	p.out(kbdData, 0xf2) // ATKBD_CMD_GETID
	cmd(i8042CmdWriteAux, 0xff)
	if k.Dropped() != 2 || p.in(kbdStatus)&i8042StatOBF != 0 {
		t.Errorf("device bytes: dropped %d, status %#x", k.Dropped(), p.in(kbdStatus))
	}

	// The status register says which port was written last.
	p.out(kbdStatus, 0xff)
	if p.in(kbdStatus)&i8042StatCmd == 0 {
		t.Error("CMD bit clear after a command")
	}
	p.out(kbdData, 0)
	if p.in(kbdStatus)&i8042StatCmd != 0 {
		t.Error("CMD bit set after data")
	}

	// Unanswered commands fill the queue and then lose the newest, and
	// Reset empties it.
	for range 20 {
		cmd(i8042CmdReadCTR)
	}
	k.Reset()
	if p.in(kbdStatus)&i8042StatOBF != 0 {
		t.Error("Reset kept queued answers")
	}

	// The gap between the two ports is not the controller's.
	for port := uint64(I8042Port + 1); port < I8042Port+4; port++ {
		if v := p.in(port); v != 0xff {
			t.Errorf("port %#x reads %#x, want 0xff", port, v)
		}
		p.out(port, 0xfe)
	}
	if *resets != 0 {
		t.Errorf("%d resets from command traffic", *resets)
	}
}
