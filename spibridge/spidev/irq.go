package spidev

import (
	"fmt"
	"strconv"
	"strings"
)

// InterruptSource is the chip's interrupt line as a real transport sees
// it: a GPIO line with edge detection, or a timer standing in for a line
// that is not wired. A Dev delivers its source's edges as its own
// Interrupt channel.
type InterruptSource interface {
	// Interrupt delivers falling edges of the line, coalesced: one
	// pending value stands for one or more edges. The channel is never
	// closed; after Close it simply stays quiet.
	Interrupt() <-chan struct{}
	// Close releases the line and stops delivery. It waits for any edge
	// being delivered, so no value is sent after it returns.
	Close() error
}

// ParseIRQ parses an interrupt line spec of the form CHIP:OFFSET, as in
// "gpiochip0:25" (GPIO 25 of the Pi's main GPIO controller). CHIP is a
// gpiochip name or a /dev path; OFFSET is the line number on that chip.
func ParseIRQ(spec string) (chip string, offset int, err error) {
	i := strings.LastIndexByte(spec, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("spibridge: interrupt line %q: want CHIP:OFFSET, as in gpiochip0:25", spec)
	}
	chip, num := spec[:i], spec[i+1:]
	if chip == "" {
		return "", 0, fmt.Errorf("spibridge: interrupt line %q: no GPIO chip before ':' (want CHIP:OFFSET, as in gpiochip0:25)", spec)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("spibridge: interrupt line %q: offset %q is not a line number (want CHIP:OFFSET, as in gpiochip0:25)", spec, num)
	}
	return chip, int(n), nil
}

// signalEdge records one edge on a buffered(1) channel without blocking:
// an edge already pending absorbs this one.
func signalEdge(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
