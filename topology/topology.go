// Package topology builds and runs the emulated setup of chip.md section
// 1: two nodes, each a chip driven by a driver core over an SPI bus, the
// two chips joined by a virtual cable.
package topology

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/driver"
	"tsnsim/fault"
	"tsnsim/rtimer"
	"tsnsim/spibridge"
)

// Config sets up a topology. Chip, Driver and Cable are templates applied
// to both nodes; Chip.Name, Chip.MAC and Driver.Receive are set per node.
type Config struct {
	Names  [2]string // default "a", "b"
	Chip   chip.Config
	SPI    spibridge.Timing
	Cable  cable.Config
	Driver driver.Config
	// Transport, if set, carries node i's SPI bus to its driver: it
	// returns the transport the driver core uses instead of bus itself
	// (a socket client to a server serving bus, a tracing wrapper, ...)
	// and what to close after the driver has stopped. Nil: the driver
	// uses the in-process bus directly.
	Transport func(i int, bus *spibridge.InProcess) (spibridge.Transport, io.Closer, error)
	// Faults, if set, injects its faults into both nodes' SPI buses,
	// interrupt lines and chips and into both directions of the cable
	// (each node's name selects its faults). The caller closes it.
	Faults *fault.Injector
	// Timer, if set, is the precise timer service of a real-time run:
	// WithDefaults gives it to the chips, the SPI buses and the cable
	// (their own Timer fields), which then wait through it instead of
	// the time package. Tests leave it nil (virtual time needs the time
	// package); the caller closes it after the topology.
	Timer *rtimer.Service
	// DriverConfig, if set, adjusts node i's driver configuration after
	// the template is applied (per-node TSN callbacks, schedules).
	DriverConfig func(i int, c *driver.Config)
	Logger       *zap.Logger
}

// Node is one emulated board: chip, SPI bus, driver.
type Node struct {
	Name string
	Chip *chip.Chip
	Bus  *spibridge.InProcess // the chip's bus, with the timing model
	// Transport is what the driver core drives: Bus itself, or what
	// Config.Transport made of it.
	Transport spibridge.Transport
	Driver    *driver.Driver
	closer    io.Closer
	initial   snapshot // attached: the chip's registers read at Start
	final     snapshot // attached: the chip's registers read at Close
	finalErr  error    // attached: why final is incomplete (the chip did not answer)
	startErr  error    // attached: why initial is incomplete
}

// Topology is two nodes and the cable between them.
type Topology struct {
	Nodes       [2]*Node
	Cable       *cable.Cable
	log         *zap.Logger
	beforeClose []func()
}

// BeforeClose registers f to run at the start of Close, before the
// drivers stop (users of the drivers, like a gPTP port, stop there).
func (t *Topology) BeforeClose(f func()) { t.beforeClose = append(t.beforeClose, f) }

// New builds the topology; receive[i] takes the frames node i receives
// (nil: every frame is counted as dropped). The chips share one epoch, so
// their SYSCOUNT clocks are aligned; the link speed of the chips is given
// to the cable. It fails only if Config.Transport does.
func New(cfg Config, receive [2]func([]byte) bool) (*Topology, error) {
	cfg = cfg.WithDefaults()
	t := &Topology{log: cfg.Logger.Named("topology")}
	for i := range t.Nodes {
		c, bus := NewChip(cfg, i)
		n := &Node{Name: c.Name(), Chip: c, Bus: bus, Transport: bus}
		if cfg.Transport != nil {
			tr, closer, err := cfg.Transport(i, bus)
			if err != nil {
				bus.Close()
				t.closeTransports()
				return nil, fmt.Errorf("topology: transport of %s: %w", n.Name, err)
			}
			n.Transport, n.closer = tr, closer
		}
		dc := cfg.Driver
		dc.Name = cfg.Names[i]
		dc.Receive = receive[i]
		dc.Logger = cfg.Logger
		if cfg.DriverConfig != nil {
			cfg.DriverConfig(i, &dc)
		}
		n.Driver = driver.New(n.Transport, dc)
		t.Nodes[i] = n
	}
	t.Cable = cable.Connect(t.Nodes[0].Chip, t.Nodes[1].Chip, cfg.Cable)
	if cfg.Faults != nil {
		if err := t.injectFaults(cfg.Faults); err != nil {
			t.Cable.Close()
			t.closeTransports()
			return nil, err
		}
	}
	return t, nil
}

// injectFaults wires inj into every layer of both nodes.
func (t *Topology) injectFaults(inj *fault.Injector) error {
	for i, n := range t.Nodes {
		if err := InjectFaults(inj, n.Chip, n.Bus, t.Cable, i); err != nil {
			return err
		}
	}
	return nil
}

// InjectFaults wires inj into one node: its SPI bus, interrupt line and
// chip, and the direction of cab that the chip sends into (port 0 or 1
// of cable.Connect). The chip's name selects its faults.
func InjectFaults(inj *fault.Injector, c *chip.Chip, bus *spibridge.InProcess, cab *cable.Cable, port int) error {
	name := c.Name()
	bus.SetFaults(inj.SPI(name))
	if err := bus.SetIRQFaults(inj.IRQ(name)); err != nil {
		return fmt.Errorf("topology: faults of %s: %w", name, err)
	}
	if err := inj.AttachChip(name, c); err != nil {
		return fmt.Errorf("topology: faults of %s: %w", name, err)
	}
	if err := cab.SetFaults(port, inj.Cable(name)); err != nil {
		return fmt.Errorf("topology: faults of the cable from %s: %w", name, err)
	}
	return nil
}

// WithDefaults fills the fields New would: names "a" and "b", a nop
// logger, one epoch for both chips (now), the chips' link speed for the
// cable, the precise timer (if any) for chips, buses and cable. Callers building chips one at a time (NewChip) use it once.
func (cfg Config) WithDefaults() Config {
	if cfg.Names == ([2]string{}) {
		cfg.Names = [2]string{"a", "b"}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Chip.Epoch.IsZero() {
		cfg.Chip.Epoch = time.Now()
	}
	if cfg.Cable.LinkBitsPerSec == 0 {
		cfg.Cable.LinkBitsPerSec = cfg.Chip.LinkBitsPerSec
	}
	if cfg.Timer != nil {
		cfg.Chip.Timer, cfg.SPI.Timer, cfg.Cable.Timer = cfg.Timer, cfg.Timer, cfg.Timer
	}
	return cfg
}

// NewChip builds node i's chip (named cfg.Names[i], MAC NodeMAC(i)) and
// its SPI bus, without a driver: what New builds for each node, and what
// `tsnsim chip serve` serves. cfg must have its defaults (WithDefaults).
func NewChip(cfg Config, i int) (*chip.Chip, *spibridge.InProcess) {
	cc := cfg.Chip
	cc.Name = cfg.Names[i]
	cc.MAC = NodeMAC(i)
	cc.Logger = cfg.Logger
	c := chip.New(cc)
	return c, spibridge.NewInProcess(c, cfg.SPI, cfg.Logger.With(zap.String("node", cc.Name)))
}

// closeTransports closes what Config.Transport made, then the buses.
func (t *Topology) closeTransports() []error {
	var errs []error
	for _, n := range t.Nodes {
		if n == nil {
			continue
		}
		if n.closer != nil {
			errs = append(errs, n.closer.Close())
		}
		if n.Bus != nil {
			errs = append(errs, n.Bus.Close())
		}
	}
	return errs
}

// NodeMAC is the TSN_MAC_ADDR reset value of node i: a locally
// administered unicast address, 02:00:00:00:00:0(i+1).
func NodeMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i + 1)} }

// Start starts both chips and opens both drivers.
func (t *Topology) Start(ctx context.Context) error {
	for _, n := range t.Nodes {
		if n.Chip != nil {
			n.Chip.Start()
			continue
		}
		snap, err := readSnapshot(ctx, n.Driver)
		n.initial, n.startErr = snap, err
		if err != nil {
			return fmt.Errorf("topology: %s: %w", n.Name, err)
		}
	}
	for _, n := range t.Nodes {
		if err := n.Driver.Open(ctx); err != nil {
			return fmt.Errorf("topology: open %s: %w", n.Name, err)
		}
	}
	t.log.Debug("topology started")
	return nil
}

// Attached reports whether the chips live in another process (Attach):
// then Chip, Bus and Cable are nil and the chips are seen through their
// registers over SPI only.
func (t *Topology) Attached() bool { return t.Cable == nil }

// Close stops the drivers, the chips and the cable, and waits for every
// goroutine they started.
func (t *Topology) Close(ctx context.Context) error {
	for _, f := range t.beforeClose {
		f()
	}
	var errs []error
	for _, n := range t.Nodes {
		if err := n.Driver.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("topology: stop %s: %w", n.Name, err))
		}
	}
	for _, n := range t.Nodes {
		if n.Chip != nil {
			n.Chip.Close()
			continue
		}
		snap, err := readSnapshot(ctx, n.Driver)
		n.final, n.finalErr = snap, err
		errs = append(errs, err)
	}
	if t.Cable != nil {
		t.Cable.Close()
	}
	errs = append(errs, t.closeTransports()...)
	t.log.Debug("topology closed")
	return errors.Join(errs...)
}
