package driver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// startClockReads starts the clock reader of Config.ClockReads for the
// session ctx; Stop waits for it (waitClockReads).
func (d *Driver) startClockReads(ctx context.Context) {
	if d.cfg.ClockReads <= 0 {
		return
	}
	d.fld.readers.Add(1)
	go func() {
		defer d.fld.readers.Done()
		d.log.Debug("clock reader started", zap.Duration("every", d.cfg.ClockReads))
		defer d.log.Debug("clock reader stopped")
		ctx := withTask(ctx, &task{name: "clock reader (get_sys_clock)"})
		tick := time.NewTicker(d.cfg.ClockReads)
		defer tick.Stop()
		for {
			_, err := d.ReadSysCount(ctx)
			if ctx.Err() != nil {
				return
			}
			d.fld.mu.Lock()
			if err != nil {
				d.fld.clockErrs++
			} else {
				d.fld.clockReads++
			}
			d.fld.mu.Unlock()
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// fieldStopWait is Stop's wait, once the worker has stopped, for the
// clock reader to stop and for lost SPI completions to come back
// (FieldXmitClock): until then no transfer of Stop's could succeed. It
// waits at most until ctx ends.
func (d *Driver) fieldStopWait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { d.fld.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.New("driver: clock reader still in a transfer at Stop")
	}
	if left := d.fld.aftermathLeft(); left > 0 {
		d.log.Warn("Stop waits for SPI completions to come back", zap.Duration("for", left))
		if !sleepCtx(ctx, left) {
			return fmt.Errorf("driver: SPI completions still lost at Stop: %w", ctx.Err())
		}
	}
	if d.cfg.Field.Has(FieldXmitClock) && (d.rxl.trouble || d.rxl.dirty) {
		// Reads whose completion was lost took entries the worker had
		// no time to settle: resynchronise once, as the worker would.
		w := &worker{d: d, ctx: ctx, bo: newBackoff(),
			meta: proto.RxMetaRead(), metaMISO: make([]byte, proto.RxMetaReadLen),
			frameMOSI: proto.RxFrameRead(proto.MaxWireLen)}
		d.rxl.trouble = true
		if err := w.resync(); err != nil {
			return fmt.Errorf("driver: RX resync at Stop: %w", err)
		}
	}
	return nil
}

// fieldSysCount is ReadSysCount in the field driver's lock order
// (FieldLockOrder): the register lock, SYSCOUNT_H, then the TX-queue
// lock for L and H.
func (d *Driver) fieldSysCount(ctx context.Context) (uint64, error) {
	f := &d.fld
	t := taskOf(ctx, "register reader (ReadSysCount)")
	ctx = withTask(ctx, t)
	if err := f.regLock.lock(ctx, t, d); err != nil {
		return 0, err
	}
	defer f.regLock.unlock(t)
	hi, err := d.ReadRegister(ctx, regs.TSNSysCount)
	if err != nil {
		return 0, err
	}
	if err := f.txLock.lock(ctx, t, d); err != nil {
		return 0, err
	}
	defer f.txLock.unlock(t)
	return d.sysCountFrom(ctx, hi)
}
