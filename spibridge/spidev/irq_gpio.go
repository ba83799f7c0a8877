package spidev

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"
)

// gpioLine is a requested GPIO line with edge detection. Close releases
// it and, like gpiocdev's Line.Close, waits for a running edge handler to
// return, so no handler call starts or runs after Close returns.
type gpioLine interface {
	Close() error
}

// gpioRequester requests line offset of chip as an input with
// falling-edge detection, calling onEdge (from its own goroutine) for
// every falling edge. It is gpiocdev on Linux and a fake in tests.
type gpioRequester func(chip string, offset int, onEdge func()) (gpioLine, error)

// GPIOInterrupt is the chip's interrupt line on a GPIO input of the host
// (the chip's IRQ is active low: a falling edge means received frames
// are waiting). The edge handler only counts the edge and signals a
// buffered channel without blocking, so edges that arrive while one is
// pending coalesce into it.
type GPIOInterrupt struct {
	chip   string
	offset int
	log    *zap.Logger
	c      chan struct{}
	edges  atomic.Uint64
	closed atomic.Bool

	mu   sync.Mutex
	line gpioLine
}

// newGPIOInterrupt requests the line through req.
func newGPIOInterrupt(req gpioRequester, chip string, offset int, log *zap.Logger) (*GPIOInterrupt, error) {
	if log == nil {
		log = zap.NewNop()
	}
	g := &GPIOInterrupt{
		chip: chip, offset: offset, c: make(chan struct{}, 1),
		log: log.Named("irq").With(zap.String("line", fmt.Sprintf("%s:%d", chip, offset))),
	}
	line, err := req(chip, offset, g.edge)
	if err != nil {
		return nil, fmt.Errorf("spibridge: request GPIO line %s:%d for the interrupt: %w%s", chip, offset, err, gpioHint(err))
	}
	g.line = line
	g.log.Info("interrupt line requested (falling edge)")
	return g, nil
}

// gpioHint suggests a fix for a failed line request.
func gpioHint(err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return " (no such GPIO chip: list them with gpiodetect; see docs/bring-up.md)"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return " (no permission: add the user to the gpio group or run as root; see docs/bring-up.md)"
	case errors.Is(err, syscall.EBUSY):
		return " (line already in use, often by the vendor kernel driver: gpioinfo shows the consumer)"
	case errors.Is(err, syscall.EINVAL):
		return " (offset out of range for this chip? gpioinfo lists its lines)"
	}
	return ""
}

// edge is the line's event handler: count, signal, return. It never
// blocks and never closes anything.
func (g *GPIOInterrupt) edge() {
	if g.closed.Load() {
		return
	}
	g.edges.Add(1)
	signalEdge(g.c)
}

// Interrupt implements InterruptSource.
func (g *GPIOInterrupt) Interrupt() <-chan struct{} { return g.c }

// Edges returns how many falling edges the line has reported, coalesced
// ones included.
func (g *GPIOInterrupt) Edges() uint64 { return g.edges.Load() }

// Close implements InterruptSource: it releases the line (waiting for a
// running handler) and stops delivery. Closing twice is a no-op.
func (g *GPIOInterrupt) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed.Swap(true) {
		return nil
	}
	if err := g.line.Close(); err != nil {
		return fmt.Errorf("spibridge: release GPIO line %s:%d: %w", g.chip, g.offset, err)
	}
	g.log.Info("interrupt line released", zap.Uint64("edges", g.edges.Load()))
	return nil
}

var _ InterruptSource = (*GPIOInterrupt)(nil)
