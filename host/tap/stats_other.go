//go:build !linux

package tap

import (
	"errors"
	"time"
)

// KernelStats fails: netlink is Linux only (and so is New).
func (d *Device) KernelStats() (KernelStats, error) {
	return KernelStats{}, errors.New("tap: kernel counters need Linux")
}

// Quiesce fails: netlink is Linux only (and so is New).
func (d *Device) Quiesce(timeout time.Duration) error {
	return errors.New("tap: quiesce needs Linux")
}
