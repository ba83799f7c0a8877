package driver

import (
	"context"
	"fmt"

	"tsnsim/chip/regs"
)

// AlignPPS moves the chip's PPS output to the PHC's whole seconds: it
// writes PPS_CYCLE_1S = the ticks of one PHC second at the PHC's current
// rate (rounded), and PPS_PULSE_AT = the SYSCOUNT value at which the PHC
// reaches its next whole second (at least margin ns ahead, so the write
// lands before it). It returns that PHC second. It uses the shared bus
// from the caller's goroutine, like the register ioctl; calling it once
// per second, shortly before the second, keeps the pulses on PHC seconds
// while the PHC is steered: the pulse is timed by SYSCOUNT, which the
// driver cannot steer, so a PHC adjusted after the call moves away from
// it (a servo's frequency changes of tens of ppb are tens of ns over a
// second). The cycle register holds whole ticks; the remainder is
// corrected at the next call.
//
// PPS_PULSE_AT is written as H = 0xFFFFFFFF, L, H: every value seen in
// between lies far ahead, so no pulse fires on a half-written value.
func (d *Driver) AlignPPS(ctx context.Context, margin int64) (int64, error) {
	now, err := d.PHCGettime()
	if err != nil {
		return 0, err
	}
	sec := (now+margin)/1_000_000_000 + 1
	m := d.phc.get()
	at := m.ticks(sec * 1_000_000_000)
	if m.at(at) < sec*1_000_000_000 {
		at++
	}
	next := m.ticks((sec + 1) * 1_000_000_000)
	if m.at(next) < (sec+1)*1_000_000_000 {
		next++
	}
	cyc := next - at
	if err := d.write64(ctx, regs.PPSCycle1S, cyc); err != nil {
		return 0, err
	}
	for _, w := range [...]struct {
		off uint16
		v   uint32
	}{{regs.PPSPulseAt, 0xFFFFFFFF}, {regs.PPSPulseAt + 4, uint32(at)}, {regs.PPSPulseAt, uint32(at >> 32)}} {
		if err := d.WriteRegister(ctx, w.off, w.v); err != nil {
			return 0, fmt.Errorf("driver: PPS: %w", err)
		}
	}
	return sec * 1_000_000_000, nil
}

// write64 writes a 64-bit register as two halves, H first.
func (d *Driver) write64(ctx context.Context, off uint16, v uint64) error {
	for _, h := range [...]struct {
		off uint16
		v   uint32
	}{{off, uint32(v >> 32)}, {off + 4, uint32(v)}} {
		if err := d.WriteRegister(ctx, h.off, h.v); err != nil {
			return fmt.Errorf("driver: PPS: %w", err)
		}
	}
	return nil
}
