//go:build linux

package tap

import (
	"errors"
	"fmt"
	"io/fs"
	"net"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// New checks the prerequisites (capabilities, /dev/net/tun, names not
// taken), creates the TAP interface cfg.Name, moves it into a new
// namespace cfg.Netns if set, and configures it there: MAC, MTU, link
// up, addresses. Frames flow once the device is passed to the topology as
// a receive function and attached to a driver with Attach. On error
// everything created so far is removed again.
//
// With cfg.Netns, New first removes the namespaces that tsnsim processes
// which are gone left behind (their owner marks say so), then marks the
// new namespace as this process's.
func New(cfg Config) (*Device, error) {
	if err := checkPrerequisites(cfg.Netns != ""); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Netns != "" {
		unlock, err := lockOwners()
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := sweepStale(cfg.Logger); err != nil {
			return nil, err
		}
	}
	if err := checkNamesFree(cfg); err != nil {
		return nil, err
	}

	ifce, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: cfg.Name},
	})
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("tap: create TAP %q: %w: this user may not open %s (the usual mode is 0666; "+
				"with CAP_NET_ADMIN that is all a TAP needs), or run as root", cfg.Name, err, tunPath)
		}
		return nil, fmt.Errorf("tap: create TAP %q: %w", cfg.Name, err)
	}
	if got := ifce.Name(); got != cfg.Name {
		ifce.Close()
		return nil, fmt.Errorf("tap: asked for TAP %q, the kernel named it %q", cfg.Name, got)
	}

	t := &teardown{name: cfg.Name}
	fail := func(err error) (*Device, error) {
		return nil, errors.Join(err, ifce.Close(), t.run())
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return fail(fmt.Errorf("tap: netlink: %w", err))
	}
	t.handle = h
	link, err := h.LinkByName(cfg.Name)
	if err != nil {
		return fail(fmt.Errorf("tap: find new TAP %q: %w", cfg.Name, err))
	}

	if cfg.Netns != "" {
		if err := writeMark(cfg.Netns); err != nil {
			return fail(err)
		}
		t.mark = cfg.Netns
		ns, err := createNamespace(cfg.Netns)
		if err != nil {
			return fail(err)
		}
		t.ns, t.nsName = ns, cfg.Netns
		// Moving the link brings it down and drops its addresses, so it is
		// configured after the move, from inside the namespace.
		if err := h.LinkSetNsFd(link, int(ns)); err != nil {
			return fail(fmt.Errorf("tap: move %q into namespace %q: %w", cfg.Name, cfg.Netns, err))
		}
		h.Close()
		t.handle = nil
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return fail(fmt.Errorf("tap: netlink in namespace %q: %w", cfg.Netns, err))
		}
		t.handle = h
		if link, err = h.LinkByName(cfg.Name); err != nil {
			return fail(fmt.Errorf("tap: find %q in namespace %q: %w", cfg.Name, cfg.Netns, err))
		}
		lo, err := h.LinkByName("lo")
		if err == nil {
			err = h.LinkSetUp(lo)
		}
		if err != nil {
			return fail(fmt.Errorf("tap: bring up lo in namespace %q: %w", cfg.Netns, err))
		}
	}
	if err := configure(h, link, cfg); err != nil {
		return fail(err)
	}
	d := newDevice(cfg, ifce, t.run)
	d.log.Info("tap: up", zap.String("netns", cfg.Netns), zap.Stringer("mac", cfg.MAC),
		zap.Int("mtu", cfg.MTU), zap.Any("addrs", cfg.Addrs))
	return d, nil
}

// checkNamesFree fails if the interface name is taken in the caller's
// namespace or the namespace name is taken: New does not clobber.
func checkNamesFree(cfg Config) error {
	if _, err := netlink.LinkByName(cfg.Name); err == nil {
		return fmt.Errorf("tap: interface %q exists already; remove it (ip link del %s) or choose another name",
			cfg.Name, cfg.Name)
	} else if !errors.As(err, &netlink.LinkNotFoundError{}) {
		return fmt.Errorf("tap: look up interface %q: %w", cfg.Name, err)
	}
	if cfg.Netns == "" {
		return nil
	}
	exists, err := namespaceExists(cfg.Netns)
	if err != nil {
		return err
	}
	if !exists {
		return nil
	}
	o, marked, err := readMark(cfg.Netns)
	switch {
	case err != nil:
		return err
	case !marked:
		return fmt.Errorf("tap: network namespace %q exists already and tsnsim did not create it (no owner mark in %s); "+
			"remove it (ip netns del %s) or choose another name", cfg.Netns, ownerDir, cfg.Netns)
	default: // the sweep removed it if its owner were gone
		return fmt.Errorf("tap: network namespace %q is in use by a running tsnsim (%v); stop that one or choose another name",
			cfg.Netns, o)
	}
}

// configure sets MAC and MTU, brings the link up and adds the addresses.
func configure(h *netlink.Handle, link netlink.Link, cfg Config) error {
	if cfg.MAC != nil {
		if err := h.LinkSetHardwareAddr(link, cfg.MAC); err != nil {
			return fmt.Errorf("tap: set MAC of %q to %v: %w", cfg.Name, cfg.MAC, err)
		}
	}
	if err := h.LinkSetMTU(link, cfg.MTU); err != nil {
		return fmt.Errorf("tap: set MTU of %q to %d: %w", cfg.Name, cfg.MTU, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("tap: bring up %q: %w", cfg.Name, err)
	}
	for _, p := range cfg.Addrs {
		ip := p.Addr().WithZone("")
		a := &netlink.Addr{IPNet: &net.IPNet{
			IP:   net.IP(ip.AsSlice()),
			Mask: net.CIDRMask(p.Bits(), ip.BitLen()),
		}}
		if ip.Is6() {
			// No duplicate address detection: usable at once.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("tap: add address %v to %q: %w", p, cfg.Name, err)
		}
	}
	return nil
}

// teardown removes what New created: the link if it is still there, the
// netlink handle, the namespace, its owner mark.
type teardown struct {
	name   string
	handle *netlink.Handle
	ns     netns.NsHandle
	nsName string
	mark   string // namespace whose owner mark New wrote
}

func (t *teardown) run() error {
	var errs []error
	if t.handle != nil {
		// A TAP that is not persistent goes away with its file; this
		// removes it if it did not.
		if link, err := t.handle.LinkByName(t.name); err == nil {
			if err := t.handle.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("tap: delete %q: %w", t.name, err))
			}
		}
		t.handle.Close()
		t.handle = nil
	}
	nsErr := error(nil)
	if t.nsName != "" {
		t.ns.Close()
		nsErr = deleteNamespace(t.nsName)
		errs = append(errs, nsErr)
		t.nsName = ""
	}
	if t.mark != "" && nsErr == nil {
		// Kept if the namespace could not be removed: the next tsnsim
		// removes both once this process is gone.
		errs = append(errs, removeMark(t.mark))
		t.mark = ""
	}
	return errors.Join(errs...)
}
