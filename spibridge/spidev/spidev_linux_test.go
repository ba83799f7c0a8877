package spidev

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOpenSpidevErrors runs the real Linux open path: a missing node
// wraps ENOENT and says how to enable spidev; a file that is not an spidev
// node fails its first ioctl with ENOTTY.
func TestOpenSpidevErrors(t *testing.T) {
	_, err := Open(Config{Path: "/dev/spidev-does-not-exist9.9"})
	if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "dtparam=spi=on") || !strings.Contains(err.Error(), "docs/bring-up.md") {
		t.Errorf("missing node: %v", err)
	}
	if _, err := Open(Config{}); err == nil {
		t.Error("empty path accepted")
	}
	plain := filepath.Join(t.TempDir(), "not-spidev")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Config{Path: plain})
	if !errors.Is(err, syscall.ENOTTY) || !strings.Contains(err.Error(), "SPI_IOC_WR_MODE") {
		t.Errorf("regular file: %v", err)
	}
}
