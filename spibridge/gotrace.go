package spibridge

import (
	"context"
	"runtime/trace"
	"strconv"
	"time"
)

// WaitLogCategory is the category of the Go execution trace's log event
// that each wait of a bus records while the trace runs (tsnsim run
// --go-trace): the message is "late_ns=L wait_ns=W", how long after its
// end on the emulated timeline the waiting goroutine woke (L) from a wait
// of W. Read next to the goroutine's own events, it tells why a transfer
// returned late: its processor ran other goroutines, its thread was off
// the CPU, or its timer woke it late.
const WaitLogCategory = "spibridge.wait"

// logWait records one wait in the Go execution trace, if one runs (one
// atomic load otherwise).
func logWait(late, wait time.Duration) {
	if !trace.IsEnabled() {
		return
	}
	msg := make([]byte, 0, 48)
	msg = append(msg, "late_ns="...)
	msg = strconv.AppendInt(msg, int64(late), 10)
	msg = append(msg, " wait_ns="...)
	msg = strconv.AppendInt(msg, int64(wait), 10)
	trace.Log(context.Background(), WaitLogCategory, string(msg))
}
