package devices

import "sync/atomic"

// Power is the ACPI hardware-reduced sleep control, sleep status and
// reset registers (layout.go has their ports and values for the FADT and
// DSDT), the clean way out of a stock Linux guest.
//
// Why it exists: on a hardware-reduced ACPI platform there is no PM1
// control block, so without these registers Linux has no pm_power_off;
// `poweroff` ends in a halt loop that KVM's in-kernel irqchip serves
// without ever exiting to the VMM, and the instance hangs. Firecracker
// sidesteps that by having guests reboot (reboot=k, the i8042 reset
// pulse) and treating every reboot as an exit; cloud-hypervisor answers
// the FADT's sleep and reset registers, as this device does, so both
// `poweroff` and `reboot` work with no kernel parameter: Linux's
// acpi_power_off writes SLP_TYP|SLP_EN to the sleep control register,
// and its default reboot tries the FADT reset register first.
//
// A sleep request for any state other than S5 (none is declared in the
// DSDT) is answered by setting WAK_STS at once: the guest, which polls
// the status register for it, resumes instead of spinning forever.
type Power struct {
	powerOff func()
	reset    func()

	wake atomic.Uint32 // WAK_STS
}

// NewPower returns the registers, calling powerOff when the guest enters
// S5 and reset when it writes ResetValue to the reset register (nil:
// ignored). Both run on the vCPU goroutine and must not block; a guest
// may repeat either before the VMM stops it.
func NewPower(powerOff, reset func()) *Power {
	return &Power{powerOff: powerOff, reset: reset}
}

// Read answers the status register (offset 1) with WAK_STS; the control
// and reset registers read 0, as the specification has it.
func (p *Power) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
		if offset+uint64(i) == SleepStatusPort-PowerPort {
			data[i] = byte(p.wake.Load())
		}
	}
}

// Write handles the control register (offset 0), the status register
// (offset 1, write 1 to clear WAK_STS) and the reset register (offset 2).
func (p *Power) Write(offset uint64, data []byte) {
	for i, v := range data {
		switch offset + uint64(i) {
		case SleepControlPort - PowerPort:
			if v&SleepEnable == 0 {
				continue
			}
			if (v&SleepTypeMask)>>SleepTypeShift == SleepTypeS5 {
				if p.powerOff != nil {
					p.powerOff()
				}
				continue
			}
			p.wake.Store(WakeStatus)
		case SleepStatusPort - PowerPort:
			if v&WakeStatus != 0 {
				p.wake.Store(0)
			}
		case ResetPort - PowerPort:
			if v == ResetValue && p.reset != nil {
				p.reset()
			}
		}
	}
}

// Reset clears WAK_STS, for a guest reboot.
func (p *Power) Reset() { p.wake.Store(0) }
