package spidev

import (
	"strings"
	"testing"
)

// TestOpenGPIOInterruptMissingChip runs the real gpiocdev request path
// against a chip that does not exist.
func TestOpenGPIOInterruptMissingChip(t *testing.T) {
	_, err := OpenGPIOInterrupt("gpiochip-none", 25, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "spibridge: request GPIO line gpiochip-none:25") || !strings.Contains(err.Error(), "gpiodetect") {
		t.Errorf("got %v", err)
	}
}
