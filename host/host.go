// Package host is the seam between a driver core and the network stack
// above it: frames in, frames out, with their hardware timestamps (RX
// stamps on received frames, TX stamp completions for frames that asked
// for one: StampedNIC, StampedBackend). Implementations: the embedded
// userspace stack (host/netstack, the default), a TAP device with the
// Linux stack (host/tap, needs root), and in-memory endpoints in tests.
package host

import (
	"context"
	"errors"
	"time"

	"tsnsim/driver"
)

// NIC is what a backend sends frames into: a driver core.
// *driver.Driver implements it.
type NIC interface {
	// Transmit queues one Ethernet frame (no FCS); driver.ErrBusy means
	// the TX ring is full and the frame was not taken.
	Transmit(frame []byte) error
	// QueueStopped reports whether the TX queue is stopped.
	QueueStopped() bool
	// Wake delivers a value when a stopped queue is woken.
	Wake() <-chan struct{}
}

var _ NIC = (*driver.Driver)(nil)

// StampedNIC is a NIC that takes TX timestamp requests (SKBTX_HW_TSTAMP).
// *driver.Driver implements it; the outcome of each request goes to the
// driver's TSNConfig.TxStamped (wired to StampedBackend.TxStamped by
// Wire).
type StampedNIC interface {
	NIC
	TransmitStamped(frame []byte, req driver.StampRequest) error
}

var _ StampedNIC = (*driver.Driver)(nil)

// StampedBackend is a Backend that takes hardware timestamps: every
// received frame with its RX stamp (skb_hwtstamps), and the outcome of
// every TX stamp request (skb_tstamp_tx on the error queue). Stamps are
// PHC nanoseconds at the wire (driver.HWStamp).
type StampedBackend interface {
	Backend
	// ReceiveStamped is Receive with the frame's RX stamp (Valid false
	// when the driver has none for it).
	ReceiveStamped(frame []byte, rx driver.HWStamp) bool
	// TxStamped reports a TX stamp request's outcome; it runs on the
	// driver's SPI worker and must not block for long.
	TxStamped(s driver.TxStamp)
}

// Wire sets cfg's receive callbacks to b's: Receive, and with TSN on,
// ReceiveStamped and TxStamped when b is a StampedBackend.
func Wire(cfg *driver.Config, b Backend) {
	cfg.Receive = b.Receive
	if sb, ok := b.(StampedBackend); ok {
		cfg.TSN.ReceiveStamped = sb.ReceiveStamped
		cfg.TSN.TxStamped = sb.TxStamped
	}
}

// OfferStamped is Offer with a TX stamp request.
func OfferStamped(ctx context.Context, nic StampedNIC, frame []byte, req driver.StampRequest) error {
	return offer(ctx, nic, func() error { return nic.TransmitStamped(frame, req) }, nil)
}

// Backend is a network stack attached to one node.
type Backend interface {
	// Receive hands the stack one frame the driver received (FCS
	// stripped); the stack owns it. It reports false when the stack
	// could not take it. It must not block for long: it runs on the
	// driver's SPI worker, as netif_rx runs in the driver's context.
	Receive(frame []byte) bool
	// Attach starts moving the stack's outbound frames to nic. Frames
	// the stack sends before Attach wait in its queue.
	Attach(nic NIC) error
	// Close detaches the stack and releases everything it created.
	Close() error
}

// requeueWait bounds one wait for a stopped queue, so a missed wake-up
// costs at most this much.
const requeueWait = 100 * time.Millisecond

// Offer transmits frame on nic the way the Linux qdisc layer does: it
// does not offer frames to a stopped queue, and on NETDEV_TX_BUSY it
// waits for the queue to wake and offers the frame again. It returns nil
// once the driver took the frame, the driver's error if it dropped it,
// or ctx's error.
func Offer(ctx context.Context, nic NIC, frame []byte) error {
	return offer(ctx, nic, func() error { return nic.Transmit(frame) }, nil)
}

// Offerer offers frames as Offer does, with one timer for all its waits
// for a stopped queue instead of one per wait. One goroutine uses it at
// a time; the zero value is ready to use.
type Offerer struct{ t *time.Timer }

// Offer is Offer, waiting through o's timer.
func (o *Offerer) Offer(ctx context.Context, nic NIC, frame []byte) error {
	return offer(ctx, nic, func() error { return nic.Transmit(frame) }, &o.t)
}

// offer is Offer with transmit as the driver call; the waits use *reuse
// (made on first use) when reuse is not nil, a timer of their own
// otherwise.
func offer(ctx context.Context, nic NIC, transmit func() error, reuse **time.Timer) error {
	for {
		if !nic.QueueStopped() {
			err := transmit()
			if !errors.Is(err, driver.ErrBusy) {
				return err
			}
		}
		var t *time.Timer
		switch {
		case reuse == nil:
			t = time.NewTimer(requeueWait)
		case *reuse == nil:
			t = time.NewTimer(requeueWait)
			*reuse = t
		default:
			t = *reuse
			t.Reset(requeueWait) // stopped: no stale value (Go 1.23 timers)
		}
		select {
		case <-nic.Wake():
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}
