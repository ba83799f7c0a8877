package driver

import (
	"context"
	"fmt"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// ReadRegister reads the 32-bit register half at off (the READ_REG ioctl).
// It uses the shared SPI bus directly from the caller's goroutine, as the
// vendor's ioctl path does, and takes no driver lock.
func (d *Driver) ReadRegister(ctx context.Context, off uint16) (uint32, error) {
	miso := make([]byte, proto.RegReadLen)
	if err := d.tr.Transfer(ctx, proto.RegRead(off), miso); err != nil {
		return 0, fmt.Errorf("driver: read register %#04x: %w", off, err)
	}
	return proto.RegReadValue(miso), nil
}

// WriteRegister writes the 32-bit register half at off (the WRITE_REG
// ioctl).
func (d *Driver) WriteRegister(ctx context.Context, off uint16, v uint32) error {
	miso := make([]byte, proto.RegWriteLen)
	if err := d.tr.Transfer(ctx, proto.RegWrite(off, v), miso); err != nil {
		return fmt.Errorf("driver: write register %#04x: %w", off, err)
	}
	return nil
}

// ReadRegister64 reads a 64-bit register as H then L: two transactions,
// so a register that changes in between can tear (see ReadSysCount).
func (d *Driver) ReadRegister64(ctx context.Context, off uint16) (uint64, error) {
	hi, err := d.ReadRegister(ctx, off)
	if err != nil {
		return 0, err
	}
	lo, err := d.ReadRegister(ctx, off+4)
	if err != nil {
		return 0, err
	}
	return uint64(hi)<<32 | uint64(lo), nil
}

// ReadSysCount reads SYSCOUNT without tearing: H, L, then H again; if the
// high half moved, L is read once more under the new H (L cannot wrap
// twice in the few microseconds of one transfer).
func (d *Driver) ReadSysCount(ctx context.Context) (uint64, error) {
	hi, err := d.ReadRegister(ctx, regs.TSNSysCount)
	if err != nil {
		return 0, err
	}
	lo, err := d.ReadRegister(ctx, regs.TSNSysCount+4)
	if err != nil {
		return 0, err
	}
	hi2, err := d.ReadRegister(ctx, regs.TSNSysCount)
	if err != nil {
		return 0, err
	}
	if hi2 != hi {
		if lo, err = d.ReadRegister(ctx, regs.TSNSysCount+4); err != nil {
			return 0, err
		}
		hi = hi2
	}
	return uint64(hi)<<32 | uint64(lo), nil
}
