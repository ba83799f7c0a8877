// Package topology builds and runs the emulated setup of chip.md section
// 1: two nodes, each a chip driven by a driver core over an SPI bus, the
// two chips joined by a virtual cable.
package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/driver"
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
	Logger *zap.Logger
}

// Node is one emulated board: chip, SPI bus, driver.
type Node struct {
	Name   string
	Chip   *chip.Chip
	Bus    *spibridge.InProcess
	Driver *driver.Driver
}

// Topology is two nodes and the cable between them.
type Topology struct {
	Nodes [2]*Node
	Cable *cable.Cable
	log   *zap.Logger
}

// New builds the topology; receive[i] takes the frames node i receives
// (nil: every frame is counted as dropped). The chips share one epoch, so
// their SYSCOUNT clocks are aligned; the link speed of the chips is given
// to the cable.
func New(cfg Config, receive [2]func([]byte) bool) *Topology {
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
	t := &Topology{log: cfg.Logger.Named("topology")}
	for i := range t.Nodes {
		cc := cfg.Chip
		cc.Name = cfg.Names[i]
		cc.MAC = NodeMAC(i)
		cc.Logger = cfg.Logger
		c := chip.New(cc)
		bus := spibridge.NewInProcess(c, cfg.SPI, cfg.Logger.With(zap.String("node", cc.Name)))
		dc := cfg.Driver
		dc.Name = cfg.Names[i]
		dc.Receive = receive[i]
		dc.Logger = cfg.Logger
		t.Nodes[i] = &Node{Name: cc.Name, Chip: c, Bus: bus, Driver: driver.New(bus, dc)}
	}
	t.Cable = cable.Connect(t.Nodes[0].Chip, t.Nodes[1].Chip, cfg.Cable)
	return t
}

// NodeMAC is the TSN_MAC_ADDR reset value of node i: a locally
// administered unicast address, 02:00:00:00:00:0(i+1).
func NodeMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i + 1)} }

// Start starts both chips and opens both drivers.
func (t *Topology) Start(ctx context.Context) error {
	for _, n := range t.Nodes {
		n.Chip.Start()
	}
	for _, n := range t.Nodes {
		if err := n.Driver.Open(ctx); err != nil {
			return fmt.Errorf("topology: open %s: %w", n.Name, err)
		}
	}
	t.log.Debug("topology started")
	return nil
}

// Close stops the drivers, the chips and the cable, and waits for every
// goroutine they started.
func (t *Topology) Close(ctx context.Context) error {
	var errs []error
	for _, n := range t.Nodes {
		if err := n.Driver.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("topology: stop %s: %w", n.Name, err))
		}
	}
	for _, n := range t.Nodes {
		n.Chip.Close()
	}
	t.Cable.Close()
	for _, n := range t.Nodes {
		errs = append(errs, n.Bus.Close())
	}
	t.log.Debug("topology closed")
	return errors.Join(errs...)
}
