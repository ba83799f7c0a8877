//go:build linux

package tap

import (
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// handle opens a netlink handle in the device's namespace.
func (d *Device) handle() (*netlink.Handle, error) {
	if d.netns == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("tap: netlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromName(d.netns)
	if err != nil {
		return nil, fmt.Errorf("tap: namespace %q: %w", d.netns, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("tap: netlink in namespace %q: %w", d.netns, err)
	}
	return h, nil
}

// KernelStats reads the interface's kernel counters with netlink. The
// interface must still exist (before Close).
func (d *Device) KernelStats() (KernelStats, error) {
	h, err := d.handle()
	if err != nil {
		return KernelStats{}, err
	}
	defer h.Close()
	link, err := h.LinkByName(d.name)
	if err != nil {
		return KernelStats{}, fmt.Errorf("tap: %s: %w", d.name, err)
	}
	s := link.Attrs().Statistics
	if s == nil {
		return KernelStats{}, fmt.Errorf("tap: %s: the kernel reported no statistics", d.name)
	}
	return KernelStats{
		RxPackets: s.RxPackets, RxBytes: s.RxBytes, RxErrors: s.RxErrors, RxDropped: s.RxDropped,
		TxPackets: s.TxPackets, TxBytes: s.TxBytes, TxErrors: s.TxErrors, TxDropped: s.TxDropped,
	}, nil
}

// Quiesce brings the interface down, so the Linux stack sends no more
// frames out of it and Receive refuses frames for it, and waits (up to timeout) until the reader has taken
// what was queued: then the kernel counters (KernelStats) and the
// device's (Stats) no longer move, and can be compared. Frames still
// queued when timeout passes stay in the kernel's queue.
func (d *Device) Quiesce(timeout time.Duration) error {
	h, err := d.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("tap: %s: %w", d.name, err)
	}
	d.down.Store(true)
	if err := h.LinkSetDown(link); err != nil {
		return fmt.Errorf("tap: bring %s down: %w", d.name, err)
	}
	deadline := time.Now().Add(timeout)
	last, since := d.read.Load(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(quiesceIdle / 5)
		if n := d.read.Load(); n != last {
			last, since = n, time.Now()
			continue
		}
		if time.Since(since) >= quiesceIdle {
			return nil
		}
	}
	return fmt.Errorf("tap: %s: the reader still took frames %v after the link went down", d.name, timeout)
}
