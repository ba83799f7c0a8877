package driver

import (
	"context"
	"runtime"
	"strings"
)

// fieldTransmit is the field driver's ndo_start_xmit (Config.Field): the
// stack holds the TX-queue lock around it (FieldLockOrder), it reads
// SYSCOUNT over SPI in softirq context (FieldXmitClock, flagged to the
// atomic-sleep detector), and it queues with the field TX policy
// (FieldTxSlot, in enqueue).
func (d *Driver) fieldTransmit(frame []byte) error {
	d.mu.Lock()
	sess, up := d.sess, d.up
	refused := !up || (!d.cfg.Field.Has(FieldTxSlot) && d.queued == len(d.ring))
	d.mu.Unlock()
	if !up {
		return d.enqueue(frame, nil) // counted as dropped, interface down
	}
	if d.cfg.Field&(FieldLockOrder|FieldXmitClock) == 0 {
		return d.enqueue(frame, nil)
	}
	caller := callerOutside()
	ctx := withTask(sess, &task{name: "ndo_start_xmit (from " + caller + ")"})
	if d.cfg.Field.Has(FieldLockOrder) {
		t := taskOf(ctx, "")
		if err := d.fld.txLock.lock(ctx, t, d); err != nil {
			return d.enqueue(frame, nil) // the interface went down while waiting
		}
		defer d.fld.txLock.unlock(t)
	}
	if d.cfg.XmitClock == XmitClockSPI && !refused {
		d.readXmitClock(withAtomic(ctx, caller))
	}
	return d.enqueue(frame, nil)
}

// callerOutside names the first function on the stack outside this
// package: who called Transmit.
func callerOutside() string {
	var pcs [16]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "tsnsim/driver.") {
			return shortFunc(f.Function)
		}
		if !more {
			return "?"
		}
	}
}

// shortFunc drops the module path of a function name.
func shortFunc(fn string) string {
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		fn = fn[i+1:]
	}
	return fn
}

// task is one thread of control as the lock watchdog sees it.
type task struct {
	name    string
	waiting *fieldLock // the lock it is blocked on
}

type taskKey struct{}

// withTask names the thread of control the transfers made under ctx
// belong to.
func withTask(ctx context.Context, t *task) context.Context {
	return context.WithValue(ctx, taskKey{}, t)
}

// taskOf is the task of ctx, or a new one named name.
func taskOf(ctx context.Context, name string) *task {
	if t, ok := ctx.Value(taskKey{}).(*task); ok {
		return t
	}
	return &task{name: name}
}
