package devices

import "testing"

func newPowerRig(t *testing.T) (*Power, ports, *int, *int) {
	offs, resets := new(int), new(int)
	pw := NewPower(func() { *offs++ }, func() { *resets++ })
	p := ports{t: t, bus: NewBus(nil)}
	if err := p.bus.Register(PowerPort, PowerPortLen, pw); err != nil {
		t.Fatal(err)
	}
	return pw, p, offs, resets
}

// TestPowerS5PowersOff replays ACPICA's acpi_hw_extended_sleep for S5 as
// Linux's acpi_power_off runs it: clear WAK_STS, write SLP_TYP|SLP_EN to
// the sleep control register, then poll the status register.
func TestPowerS5PowersOff(t *testing.T) {
	_, p, offs, resets := newPowerRig(t)
	if SleepControlS5 != 0x34 {
		t.Fatalf("SleepControlS5 = %#x, want 0x34 (SLP_TYP 5 in bits 2-4, SLP_EN bit 5)", SleepControlS5)
	}
	p.out(SleepStatusPort, WakeStatus)
	p.out(SleepControlPort, SleepControlS5)
	if *offs != 1 || *resets != 0 {
		t.Fatalf("S5: %d power-offs, %d resets; want 1, 0", *offs, *resets)
	}
	// The guest must not think it woke while the VMM tears it down.
	if p.in(SleepStatusPort)&WakeStatus != 0 {
		t.Fatal("WAK_STS set after S5")
	}
}

func TestPowerResetRegister(t *testing.T) {
	_, p, offs, resets := newPowerRig(t)
	p.out(ResetPort, ResetValue+1)
	if *resets != 0 {
		t.Fatal("a value other than ResetValue reset the guest")
	}
	p.out(ResetPort, ResetValue)
	if *resets != 1 || *offs != 0 {
		t.Fatalf("ResetValue: %d resets, %d power-offs", *resets, *offs)
	}
	if v := p.in(ResetPort); v != 0 {
		t.Errorf("reset register reads %#x, want 0", v)
	}
}

func TestPowerOtherSleepStatesWakeAtOnce(t *testing.T) {
	pw, p, offs, _ := newPowerRig(t)
	// SLP_TYP without SLP_EN is only a setup write.
	p.out(SleepControlPort, SleepTypeS5<<SleepTypeShift)
	if *offs != 0 {
		t.Fatal("power-off without SLP_EN")
	}
	// S3 is not offered; if asked, the guest wakes at once.
	p.out(SleepStatusPort, WakeStatus)
	p.out(SleepControlPort, 3<<SleepTypeShift|SleepEnable)
	if *offs != 0 || p.in(SleepStatusPort) != WakeStatus {
		t.Fatalf("S3: %d power-offs, status %#x", *offs, p.in(SleepStatusPort))
	}
	if p.in(SleepControlPort) != 0 {
		t.Error("sleep control register must read 0")
	}
	p.out(SleepStatusPort, 0) // writing 0 leaves WAK_STS alone
	if p.in(SleepStatusPort) != WakeStatus {
		t.Fatal("WAK_STS cleared by writing 0")
	}
	p.out(SleepStatusPort, WakeStatus) // write 1 to clear
	if p.in(SleepStatusPort) != 0 {
		t.Fatal("WAK_STS not cleared by writing 1")
	}
	p.out(SleepControlPort, 1<<SleepTypeShift|SleepEnable)
	pw.Reset()
	if p.in(SleepStatusPort) != 0 {
		t.Fatal("Reset kept WAK_STS")
	}
}
