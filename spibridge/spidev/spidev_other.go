//go:build !linux

package spidev

import (
	"fmt"
	"runtime"
	"syscall"
)

// OpenSpidev needs Linux spidev; elsewhere it fails.
func OpenSpidev(cfg SpidevConfig) (*Spidev, error) {
	return nil, fmt.Errorf("spidev: %s: not supported on %s (Linux only): %w", cfg.Path, runtime.GOOS, syscall.ENOTSUP)
}
