//go:build !linux

package spidev

import (
	"fmt"
	"runtime"
	"syscall"

	"go.uber.org/zap"
)

// OpenGPIOInterrupt needs the Linux GPIO character device; elsewhere it
// fails.
func OpenGPIOInterrupt(chip string, offset int, log *zap.Logger) (*GPIOInterrupt, error) {
	return nil, fmt.Errorf("spibridge: GPIO interrupt line %s:%d: not supported on %s (Linux only): %w", chip, offset, runtime.GOOS, syscall.ENOTSUP)
}
