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

// EventMarker is implemented by transports with a modelled timeline (the
// in-process bus). A bus whose wake-ups are late repays the lateness by
// starting the host's next step earlier in the model than on the wall
// clock (see InProcess); a transfer that answers an event (an interrupt
// edge, a frame handed to the driver) must not start before that event,
// or a frame would leave before it was sent. The host marks such events.
type EventMarker interface {
	// Timed reports whether the transport models time at all (with the
	// timing model off there is nothing to mark).
	Timed() bool
	// MarkEvent tells the bus that transfers from now on answer an
	// event seen at at: none starts before it in the model.
	MarkEvent(at time.Time)
	// Woke tells the bus that the host was idle, waiting, and woke at
	// woke for an event at event (MarkEvent(event) included). In the
	// model the host wakes at the event, as in virtual time: the first
	// transfer it issues right after waking (within chainWindow) has its
	// issue time taken back by how late the wake-up was, within the lag
	// bound. The host's own work after waking still counts.
	Woke(event, woke time.Time)
	// LastEdge returns when the chip last raised its interrupt line, as
	// the host would read it off the edge; zero if unknown (no
	// EdgeTimer, or edges passing through an injected IRQ fault).
	LastEdge() time.Time
}

// Unwrapper is implemented by transports that wrap another (Traced,
// spitest.Recorder), so MarkerOf can see the bus behind them.
type Unwrapper interface {
	Unwrap() Transport
}

// MarkerOf returns the EventMarker behind tr, looking through wrappers
// (Unwrapper), or nil if there is none or it models no time.
func MarkerOf(tr Transport) EventMarker {
	for tr != nil {
		if m, ok := tr.(EventMarker); ok {
			if !m.Timed() {
				return nil
			}
			return m
		}
		u, ok := tr.(Unwrapper)
		if !ok {
			return nil
		}
		tr = u.Unwrap()
	}
	return nil
}
