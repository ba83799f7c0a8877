// Package spibridge is the SPI transport seam between the driver core and
// a chip: a full-duplex transfer that can fail, and an interrupt line to
// wait on. Every transport (in-process, socket, spidev) implements
// Transport, so the driver never knows which one it has.
package spibridge

import (
	"context"
	"errors"
	"syscall"
	"time"

	"tsnsim/rtimer"
)

// Transport is one SPI device as the host sees it.
type Transport interface {
	// Transfer clocks tx out on MOSI and fills rx (same length) from MISO,
	// as one transaction (chip select held throughout). Errors wrap the
	// errno the Linux kernel would return (syscall.ETIMEDOUT for a timed
	// out transfer, syscall.EINVAL for bad buffers), so errors.Is works.
	// A failed transfer may or may not have reached the chip; the error
	// says which where the transport knows. Transfer does not retain tx
	// or rx once it returns (callers reuse them).
	Transfer(ctx context.Context, tx, rx []byte) error
	// Interrupt delivers the falling edges of the chip's interrupt line,
	// coalesced: one pending value stands for one or more edges.
	Interrupt() <-chan struct{}
	// Close releases the transport; later transfers fail.
	Close() error
}

// Permanent reports whether a transfer error is one that retrying cannot
// fix: the transport is closed (EBADF), or the transport's error says so
// (a Permanent() bool method; the socket client's refusal when another
// client drives the chip). A driver gives up on it at once instead of
// retrying until its budget.
func Permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.Is(err, syscall.EBADF) || (errors.As(err, &p) && p.Permanent())
}

// Device is the chip side of a bus: what a transport drives. chip.Chip
// implements it.
type Device interface {
	// Transact decodes one transaction; an error means the chip rejected
	// it (the bus itself reports nothing to the host).
	Transact(mosi, miso []byte) error
	// IRQ delivers the interrupt line's falling edges, coalesced.
	IRQ() <-chan struct{}
}

// TimedDevice is a Device that takes the modelled decode time of a
// transaction (the chip does): the in-process bus passes it so that a
// late real-time wake-up of the bus does not delay what the chip does
// with the transaction (a TX frame's start on the line). In virtual time
// it is the current time.
type TimedDevice interface {
	Device
	TransactAt(mosi, miso []byte, at time.Time) error
}

// EdgeTimer is a Device that can tell when it last raised its interrupt
// line (the chip can): a bus with a timing model turns the timing on
// (TimeEdges), so a host that woke late for an edge can answer it as if
// it had woken at the edge (EventMarker.Woke).
type EdgeTimer interface {
	TimeEdges()
	LastEdge() time.Time
}

// Defaults of the cycle-approximate SPI model (chip.md section 5).
const (
	DefaultClockHz  = 15_000_000
	DefaultOverhead = 20 * time.Microsecond
)

// Timing is the cycle-approximate model of one SPI bus.
type Timing struct {
	// ClockHz is the SPI clock; 8 bits per byte, no gaps. Zero or
	// negative disables the model: transfers take no emulated time and
	// no overhead (the "unthrottled" mode for benchmarks).
	ClockHz int64
	// Overhead is the per-transfer host cost (spi_sync setup), during
	// which the bus is held.
	Overhead time.Duration
	// Timeout fails a transfer that has not completed this long after it
	// started on the bus. Waiting for the bus is not timed, as on Linux:
	// spi_sync waits for the controller's queue without a timeout and
	// spi_transfer_wait() times only the started transfer. Zero: the
	// Linux 6.x formula, LinuxTimeout.
	Timeout time.Duration
	// Timer, if set, is the precise timer service the bus sleeps through
	// in a real-time run (rtimer); nil uses the time package, which tests
	// and virtual time need.
	Timer *rtimer.Service
}

// DefaultTiming is the model of the boards: 15 MHz, 20 us overhead,
// Linux 6.x timeouts.
func DefaultTiming() Timing {
	return Timing{ClockHz: DefaultClockHz, Overhead: DefaultOverhead}
}

// Throttled reports whether the timing model is on.
func (t Timing) Throttled() bool { return t.ClockHz > 0 }

// WireTime is how long n bytes take on the bus, without overhead.
func (t Timing) WireTime(n int) time.Duration {
	if !t.Throttled() {
		return 0
	}
	return time.Duration(int64(n) * 8 * int64(time.Second) / t.ClockHz)
}

// Duration is how long a transfer of n bytes holds the bus: overhead plus
// wire time (0 when unthrottled).
func (t Timing) Duration(n int) time.Duration {
	if !t.Throttled() {
		return 0
	}
	return t.Overhead + t.WireTime(n)
}

// TimeoutFor is the timeout of a transfer of n bytes.
func (t Timing) TimeoutFor(n int) time.Duration {
	if t.Timeout > 0 {
		return t.Timeout
	}
	hz := t.ClockHz
	if hz <= 0 {
		hz = DefaultClockHz
	}
	return LinuxTimeout(n, hz)
}

// LinuxTimeout is spi_controller_xfer_timeout() of Linux 6.x:
// max(len*8*2 / (speed_hz/1000), 500) ms.
func LinuxTimeout(n int, speedHz int64) time.Duration {
	khz := max(speedHz/1000, 1)
	ms := max(int64(n)*8*2/khz, 500)
	return time.Duration(ms) * time.Millisecond
}

// LegacyLinuxTimeout is the formula of kernels before 6.x:
// 2*(8000*len/speed_hz) + 200 ms.
func LegacyLinuxTimeout(n int, speedHz int64) time.Duration {
	return time.Duration(2*(8000*int64(n)/max(speedHz, 1))+200) * time.Millisecond
}
