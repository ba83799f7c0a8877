//go:build !linux

package spidev

import (
	"fmt"
	"runtime"
	"syscall"
)

// Open needs Linux spidev; elsewhere it fails.
func Open(cfg Config) (*Dev, error) {
	return nil, fmt.Errorf("spidev: %s: not supported on %s (Linux only): %w", cfg.Path, runtime.GOOS, syscall.ENOTSUP)
}
