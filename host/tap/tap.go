// Package tap attaches a node's driver core to the Linux network stack
// through a TAP device, so real tools (ping, arping, iperf3, tshark) run
// over the emulated chip. It needs CAP_NET_ADMIN (and CAP_SYS_ADMIN for a
// namespace) and /dev/net/tun; the rootless default is the embedded
// userspace stack, host/netstack.
//
// Frames the driver receives are written to the TAP (Receive); frames the
// kernel sends out of the TAP are read by one goroutine and offered to the
// driver with the qdisc's requeue semantics (host.Offer). With
// Config.Netns the TAP lives in a network namespace of its own, so two
// nodes on one machine talk through the emulated cable rather than
// through the host's local routes; the namespaces carry an owner mark so
// that those of a killed process are removed at the next start.
package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"tsnsim/host"
)

// DefaultMTU is the MTU used when Config.MTU is zero.
const DefaultMTU = 1500

// maxFrame bounds one frame read from the TAP: MTU plus Ethernet and
// VLAN headers, with room to spare for a larger MTU.
const maxFrame = 65535

// Config describes one TAP device.
type Config struct {
	// Name is the interface name, e.g. "tsn-a": 1-15 bytes, no '/', ':'
	// or whitespace (ValidName). It must not exist yet, in the host
	// namespace or in Netns.
	Name string
	// MAC is the interface's hardware address; nil keeps the kernel's
	// random one.
	MAC net.HardwareAddr
	// MTU is the interface MTU; zero means DefaultMTU.
	MTU int
	// Addrs are the IPv4 and IPv6 addresses put on the interface. IPv6
	// addresses skip duplicate address detection, so they are usable at
	// once.
	Addrs []netip.Prefix
	// Netns, if not empty, names a network namespace that New creates
	// and moves the TAP into; Close deletes it. Its loopback interface is
	// brought up too. New marks the namespace with its owner (a pid file
	// under /run/tsnsim/netns); a namespace of that name left by a
	// tsnsim that died is removed, one used by a live tsnsim or not made
	// by tsnsim is refused.
	Netns string
	// Logger receives the device's logs; nil discards them.
	Logger *zap.Logger
}

// Stats are the device's counters. Every frame the driver hands to
// Receive ends in Written or WriteErrors; every frame read from the TAP
// ends in Offered, Dropped or, when the device closes while it waits for
// a stopped queue, Abandoned.
type Stats struct {
	Written     uint64 // frames written to the TAP (Receive returned true)
	WriteErrors uint64 // frames Receive could not write (returned false)
	RefusedDown uint64 // frames Receive refused, unwritten, after Quiesce took the link down (returned false)
	Read        uint64 // frames read from the TAP
	Offered     uint64 // frames the driver took (host.Offer returned nil)
	Dropped     uint64 // frames the driver refused with an error (e.g. down, too long)
	Abandoned   uint64 // frames given up when the device closed
	ReadErrors  uint64 // failed reads from the TAP other than the one at Close
}

// Device is one TAP interface attached to one node. It implements
// host.Backend. Create it with New.
type Device struct {
	name  string
	netns string
	log   *zap.Logger
	file  io.ReadWriteCloser
	// release deletes the link and the namespace New created.
	release func() error

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	attached bool
	closed   bool
	closeErr error
	wg       sync.WaitGroup

	written, writeErrors, refusedDown atomic.Uint64
	// down is set by Quiesce: the link is down, so Receive writes
	// nothing more (the kernel would drop the frame and count it as RX
	// dropped, a second count of what the driver counts as refused).
	down                              atomic.Bool
	read, offered, dropped, abandoned atomic.Uint64
	readErrors                        atomic.Uint64
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// Netns returns the name of the namespace the interface is in, or "" for
// the caller's namespace.
func (d *Device) Netns() string { return d.netns }

// Receive writes one frame the driver received to the TAP, for the
// kernel to take as if the NIC had received it. It reports false, and
// counts a write error, when the write fails (for instance after Close);
// after Quiesce it reports false without writing (RefusedDown).
func (d *Device) Receive(frame []byte) bool {
	if d.down.Load() {
		d.refusedDown.Add(1)
		return false
	}
	if _, err := d.file.Write(frame); err != nil {
		if d.writeErrors.Add(1) == 1 && !d.isClosed() {
			d.log.Warn("tap: write failed", zap.Error(err))
		}
		return false
	}
	d.written.Add(1)
	return true
}

// Attach starts the goroutine that reads the frames the kernel sends out
// of the TAP and offers them to nic. Frames sent before Attach wait in the
// TAP's queue (up to its txqueuelen). It fails if the device is attached
// already or closed.
func (d *Device) Attach(nic host.NIC) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return fmt.Errorf("tap: %s: attach after close", d.name)
	case d.attached:
		return fmt.Errorf("tap: %s: already attached", d.name)
	case nic == nil:
		return fmt.Errorf("tap: %s: attach to a nil NIC", d.name)
	}
	d.attached = true
	d.wg.Go(func() { d.readLoop(nic) })
	return nil
}

// readLoop moves frames from the TAP to nic until the file is closed.
func (d *Device) readLoop(nic host.NIC) {
	buf := make([]byte, maxFrame)
	for {
		n, err := d.file.Read(buf)
		if err != nil {
			if d.isClosed() || errors.Is(err, os.ErrClosed) {
				return
			}
			d.readErrors.Add(1)
			d.log.Error("tap: read failed, reader stops", zap.Error(err))
			return
		}
		d.read.Add(1)
		// The driver may keep the frame on its ring: give it its own copy.
		frame := append([]byte(nil), buf[:n]...)
		switch err := host.Offer(d.ctx, nic, frame); {
		case err == nil:
			d.offered.Add(1)
		case d.ctx.Err() != nil:
			d.abandoned.Add(1)
			return
		default:
			if d.dropped.Add(1) == 1 {
				d.log.Info("tap: driver dropped a frame", zap.Error(err))
			}
		}
	}
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	return Stats{
		Written:     d.written.Load(),
		WriteErrors: d.writeErrors.Load(),
		RefusedDown: d.refusedDown.Load(),
		Read:        d.read.Load(),
		Offered:     d.offered.Load(),
		Dropped:     d.dropped.Load(),
		Abandoned:   d.abandoned.Load(),
		ReadErrors:  d.readErrors.Load(),
	}
}

func (d *Device) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// Close stops the reader (closing the TAP unblocks its read), deletes the
// interface and the namespace New created, and waits for the reader to
// return. Later calls return the first call's result.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return d.closeErr
	}
	d.closed = true
	d.mu.Unlock()

	d.cancel()
	var errs []error
	if err := d.file.Close(); err != nil {
		errs = append(errs, fmt.Errorf("tap: close %s: %w", d.name, err))
	}
	d.wg.Wait()
	if d.release != nil {
		errs = append(errs, d.release())
	}
	err := errors.Join(errs...)
	d.mu.Lock()
	d.closeErr = err
	d.mu.Unlock()
	d.log.Debug("tap: closed", zap.Stringer("stats", statsString(d.Stats())))
	return err
}

type statsString Stats

func (s statsString) String() string { return fmt.Sprintf("%+v", Stats(s)) }

// tunPath is the TUN/TAP clone device; replaced by tests.
var tunPath = "/dev/net/tun"

// checkPrerequisites reports what is missing for a TAP device (in a
// namespace of its own if netns), and what to do about it.
func checkPrerequisites(netns bool) error {
	if err := checkCapabilities(netns); err != nil {
		return err
	}
	if _, err := os.Stat(tunPath); err != nil {
		return fmt.Errorf("tap: %s is missing (%v): load the tun module with "+
			"`modprobe tun`, or run the container with --device /dev/net/tun", tunPath, err)
	}
	return nil
}

// validate checks cfg and fills in defaults.
func (cfg *Config) validate() error {
	if err := ValidName(cfg.Name); err != nil {
		return err
	}
	if cfg.Netns != "" {
		if err := ValidName(cfg.Netns); err != nil {
			return fmt.Errorf("tap: namespace name: %w", err)
		}
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 68 || cfg.MTU > maxFrame-18 {
		return fmt.Errorf("tap: MTU %d out of range", cfg.MTU)
	}
	if cfg.MAC != nil && len(cfg.MAC) != 6 {
		return fmt.Errorf("tap: MAC %v is not an Ethernet address", cfg.MAC)
	}
	for _, p := range cfg.Addrs {
		if !p.IsValid() {
			return fmt.Errorf("tap: invalid address %v", p)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return nil
}

// newDevice wraps an open TAP file; release tears down what New made.
func newDevice(cfg Config, file io.ReadWriteCloser, release func() error) *Device {
	ctx, cancel := context.WithCancel(context.Background())
	return &Device{
		name:    cfg.Name,
		netns:   cfg.Netns,
		log:     cfg.Logger.Named("tap").With(zap.String("if", cfg.Name)),
		file:    file,
		release: release,
		ctx:     ctx,
		cancel:  cancel,
	}
}

var _ host.Backend = (*Device)(nil)
