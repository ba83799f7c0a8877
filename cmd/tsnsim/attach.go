package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/chip/regs"
	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/spibridge/socket"
	"tsnsim/spibridge/spidev"
	"tsnsim/topology"
)

// hardwareOptions choose where the chips are: in this process (default),
// in a chip server (--attach), or real silicon (--spidev).
type hardwareOptions struct {
	attach  []string
	spidev  string
	speed   uint32
	irq     string
	irqPoll time.Duration
	node    string
	// takeover lets an attached driver replace one that holds the chip.
	takeover bool
	nodeOptions

	// trace, if set, records every transaction of the transports opened
	// here (--spi-trace).
	trace spibridge.Recorder
}

// traced wraps tr in the SPI trace, if there is one.
func (o *hardwareOptions) traced(node string, tr spibridge.Transport) spibridge.Transport {
	if o.trace == nil {
		return tr
	}
	return spibridge.NewTraced(tr, node, o.trace)
}

func (o *hardwareOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.attach, "attach", nil, "drive the chip that tsnsim chip serve serves at `ADDR` (unix:PATH or tcp:HOST:PORT) instead of an in-process one; give it twice for nodes a and b, once for one node (--node, --serve or --backend tap)")
	fs.StringVar(&o.spidev, "spidev", "", "drive one real LAN1QTSN through this Linux spidev device, e.g. /dev/spidev0.0 (docs/bring-up.md)")
	fs.Uint32Var(&o.speed, "spidev-speed", spibridge.DefaultClockHz, "with --spidev: SPI clock in Hz")
	fs.StringVar(&o.irq, "irq", "", "with --spidev: the chip's interrupt line as GPIOCHIP:OFFSET, e.g. gpiochip0:25 (falling edge)")
	fs.DurationVar(&o.irqPoll, "irq-poll", 0, "with --spidev: no interrupt line wired; poll the chip this often instead")
	fs.BoolVar(&o.takeover, "takeover", false, "with --attach: become the driver of a chip another client drives (one that died without stopping); the server closes that client's connections")
	fs.StringVar(&o.node, "node", "a", "with one --attach or --spidev: which node this is, a or b (its default addresses; the peer is the other)")
	o.nodeOptions.addFlags(fs)
}

// single reports whether one node runs here against a peer elsewhere.
func (o *hardwareOptions) single() bool { return o.spidev != "" || len(o.attach) == 1 }

func (o *hardwareOptions) validate(backend string) error {
	switch {
	case len(o.attach) > 2:
		return fmt.Errorf("--attach given %d times: want one per node, at most 2", len(o.attach))
	case o.spidev != "" && len(o.attach) > 0:
		return fmt.Errorf("--spidev and --attach: choose one")
	case o.spidev == "" && (o.irq != "" || o.irqPoll != 0):
		return fmt.Errorf("--irq and --irq-poll need --spidev")
	case o.spidev != "" && (o.irq == "") == (o.irqPoll == 0):
		return fmt.Errorf("--spidev needs exactly one of --irq GPIOCHIP:OFFSET and --irq-poll PERIOD")
	case o.takeover && len(o.attach) == 0:
		return fmt.Errorf("--takeover needs --attach")
	case o.irqPoll < 0:
		return fmt.Errorf("--irq-poll must not be negative")
	case o.node != "a" && o.node != "b":
		return fmt.Errorf("--node %q: want a or b", o.node)
	case o.single() && backend == backendFrames:
		return fmt.Errorf("one node (--spidev or a single --attach) runs with --backend netstack or tap, not frames (the test frames need both ends)")
	}
	for _, a := range o.attach {
		if _, _, err := socket.ParseAddr(a); err != nil {
			return fmt.Errorf("--attach: %w", err)
		}
	}
	if o.irq != "" {
		if _, _, err := spidev.ParseIRQ(o.irq); err != nil {
			return fmt.Errorf("--irq: %w", err)
		}
	}
	return nil
}

// dial opens the transport of one attached node.
func dial(ctx context.Context, addr string, takeover bool, log *zap.Logger) (*socket.Client, error) {
	c, err := socket.Dial(ctx, addr, socket.ClientConfig{Logger: log, Takeover: takeover})
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", addr, err)
	}
	return c, nil
}

// attachTopology is the two-node topology over two chip-server sockets.
func (o *hardwareOptions) attachTopology(cfg topology.Config, receive [2]func([]byte) bool) (*topology.Topology, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var trs [2]spibridge.Transport
	var closers [2]io.Closer
	for i, a := range o.attach {
		c, err := dial(ctx, a, o.takeover, cfg.Logger)
		if err != nil {
			for _, c := range closers[:i] {
				c.Close()
			}
			return nil, err
		}
		trs[i], closers[i] = o.traced(cfg.Names[i], c), c
	}
	return topology.Attach(cfg, trs, closers, receive), nil
}

// openSingle opens the transport of the one node of --spidev or a single
// --attach.
func (o *hardwareOptions) openSingle(log *zap.Logger) (spibridge.Transport, error) {
	if o.spidev == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return dial(ctx, o.attach[0], o.takeover, log)
	}
	var irq spidev.InterruptSource
	if o.irq != "" {
		chipName, offset, _ := spidev.ParseIRQ(o.irq) // validated
		g, err := spidev.OpenGPIOInterrupt(chipName, offset, log)
		if err != nil {
			return nil, err
		}
		irq = g
	} else {
		irq = spidev.NewPollInterrupt(o.irqPoll)
	}
	tr, err := spidev.Open(spidev.Config{Path: o.spidev, SpeedHz: o.speed, Interrupt: irq, Logger: log})
	if err != nil {
		irq.Close()
		return nil, err
	}
	return tr, nil
}

// where names the single node's transport.
func (o *hardwareOptions) where() string {
	if o.spidev != "" {
		return o.spidev
	}
	return o.attach[0]
}

// readMAC reads TSN_MAC_ADDR: the station address in its low 48 bits.
func readMAC(ctx context.Context, d *driver.Driver) (net.HardwareAddr, error) {
	v, err := d.ReadRegister64(ctx, regs.TSNMACAddr)
	if err != nil {
		return nil, err
	}
	mac := make(net.HardwareAddr, 6)
	for b := range 6 {
		mac[b] = byte(v >> (8 * (5 - b)))
	}
	return mac, nil
}
