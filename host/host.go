// Package host is the seam between a driver core and the network stack
// above it: frames in, frames out. Implementations: the embedded
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
	for {
		if !nic.QueueStopped() {
			err := nic.Transmit(frame)
			if !errors.Is(err, driver.ErrBusy) {
				return err
			}
		}
		t := time.NewTimer(requeueWait)
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
