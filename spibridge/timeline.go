package spibridge

import (
	"context"
	"time"
)

// Timeline is the modelled bus occupancy of one transfer: when it was
// queued (Transfer called), when it started to occupy the bus and when it
// released it, on the bus's emulated timeline. In virtual time these are
// exact; in real time the transfer's goroutine wakes a little after End
// (the lateness a tracer reports apart), and the next transfer of a busy
// period still starts at End.
type Timeline struct {
	Queued, Start, End time.Time
	// Faults names the injected fault kinds that acted on the transfer,
	// "+"-joined in the order they act ("spi.latency+spi.flip"), or ""
	// (completed flips and latencies included, which no error reports).
	Faults string
}

// TimelineTransport is a Transport that can report the modelled bus
// occupancy of each transfer; the in-process bus is one. Traced uses it
// when its inner transport has it, and wall-clock readings otherwise.
type TimelineTransport interface {
	Transport
	// TransferTimeline is Transfer that also fills tl (when tl is not
	// nil), whether or not the transfer failed.
	TransferTimeline(ctx context.Context, tx, rx []byte, tl *Timeline) error
}

var _ TimelineTransport = (*InProcess)(nil)
