package spidev

import (
	"github.com/warthog618/go-gpiocdev"
	"go.uber.org/zap"
)

// OpenGPIOInterrupt requests line offset of the GPIO chip (a name such as
// "gpiochip0" or a /dev path) as an input with falling-edge detection,
// consumer "tsnsim". log may be nil.
func OpenGPIOInterrupt(chip string, offset int, log *zap.Logger) (*GPIOInterrupt, error) {
	return newGPIOInterrupt(requestGPIOLine, chip, offset, log)
}

// requestGPIOLine is the gpioRequester of real hardware: the Linux GPIO
// character device through go-gpiocdev. gpiocdev calls the handler from
// its watcher goroutine and stops that goroutine in Line.Close.
func requestGPIOLine(chip string, offset int, onEdge func()) (gpioLine, error) {
	l, err := gpiocdev.RequestLine(chip, offset,
		gpiocdev.WithConsumer("tsnsim"),
		gpiocdev.WithFallingEdge,
		gpiocdev.WithEventHandler(func(gpiocdev.LineEvent) { onEdge() }))
	if err != nil {
		return nil, err // not a nil *Line in a non-nil interface
	}
	return l, nil
}

var _ gpioLine = (*gpiocdev.Line)(nil)
