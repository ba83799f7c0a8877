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
	"tsnsim/host/netstack"
	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/workload"
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
	fs.StringArrayVar(&o.attach, "attach", nil, "drive a chip served by `tsnsim chip serve` at ADDR (unix:PATH or tcp:HOST:PORT) instead of an in-process one; give it twice for nodes a and b, once for one node (--node)")
	fs.StringVar(&o.spidev, "spidev", "", "drive one real LAN1QTSN through this Linux spidev device, e.g. /dev/spidev0.0 (docs/bring-up.md)")
	fs.Uint32Var(&o.speed, "spidev-speed", spibridge.DefaultClockHz, "with --spidev: SPI clock in Hz")
	fs.StringVar(&o.irq, "irq", "", "with --spidev: the chip's interrupt line as GPIOCHIP:OFFSET, e.g. gpiochip0:25 (falling edge)")
	fs.DurationVar(&o.irqPoll, "irq-poll", 0, "with --spidev: no interrupt line wired; poll the chip this often instead")
	fs.StringVar(&o.node, "node", "a", "with one --attach or --spidev: which node this is, a or b (its addresses; the peer is the other)")
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
	case o.irqPoll < 0:
		return fmt.Errorf("--irq-poll must not be negative")
	case o.node != "a" && o.node != "b":
		return fmt.Errorf("--node %q: want a or b", o.node)
	case o.single() && backend != backendNetstack:
		return fmt.Errorf("one node (--spidev or a single --attach) runs with --backend netstack only")
	}
	for _, a := range o.attach {
		if _, _, err := spibridge.ParseSocketAddr(a); err != nil {
			return fmt.Errorf("--attach: %w", err)
		}
	}
	if o.irq != "" {
		if _, _, err := spibridge.ParseIRQ(o.irq); err != nil {
			return fmt.Errorf("--irq: %w", err)
		}
	}
	return nil
}

// dial opens the transport of one attached node.
func dial(ctx context.Context, addr string, log *zap.Logger) (*spibridge.SocketClient, error) {
	c, err := spibridge.DialSocket(ctx, addr, spibridge.ClientConfig{Logger: log})
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
		c, err := dial(ctx, a, cfg.Logger)
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
		return dial(ctx, o.attach[0], log)
	}
	var irq spibridge.InterruptSource
	if o.irq != "" {
		chipName, offset, _ := spibridge.ParseIRQ(o.irq) // validated
		g, err := spibridge.OpenGPIOInterrupt(chipName, offset, log)
		if err != nil {
			return nil, err
		}
		irq = g
	} else {
		irq = spibridge.NewPollInterrupt(o.irqPoll)
	}
	tr, err := spibridge.OpenSpidev(spibridge.SpidevConfig{Path: o.spidev, SpeedHz: o.speed, Interrupt: irq, Logger: log})
	if err != nil {
		irq.Close()
		return nil, err
	}
	return tr, nil
}

// runSingle runs one node against a peer that is not in this process:
// real silicon cabled to another board, or one chip of a chip server.
// Its stack resolves the peer, pings it both ways and reports.
func runSingle(o *runOptions, cfg topology.Config, r *outcome) error {
	i := int(o.node[0] - 'a')
	raw, err := o.openSingle(cfg.Logger)
	if err != nil {
		return err
	}
	defer raw.Close()
	tr := o.traced(cfg.Names[i], raw)
	ctx := o.ctx
	var st *netstack.Stack
	dc := cfg.Driver
	dc.Name, dc.Logger = cfg.Names[i], cfg.Logger
	dc.Receive = func(f []byte) bool { return st.Receive(f) }
	d := driver.New(tr, dc)
	mac, err := readMAC(ctx, d)
	if err != nil {
		return err
	}
	r.printf("node %s: chip at %s, TSN_MAC_ADDR %v\n", dc.Name, o.where(), mac)
	if st, err = netstack.New(netstack.Config{Name: dc.Name, MAC: mac, Addrs: o.addrs[i], Logger: cfg.Logger}); err != nil {
		return err
	}
	defer st.Close()
	stopCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 5*time.Second)
	}
	if err := d.Open(ctx); err != nil {
		sctx, cancel := stopCtx()
		defer cancel()
		d.Stop(sctx) //nolint:errcheck // the open error is the one to report
		return err
	}
	if err := st.Attach(d); err != nil {
		sctx, cancel := stopCtx()
		defer cancel()
		d.Stop(sctx) //nolint:errcheck // the attach error is the one to report
		return err
	}
	stopWatch := watchProgress(o.ctx, o.cancel, []*driver.Driver{d}, []string{dc.Name}, o.stallTimeout())
	peer := o.addrs[1-i][0].Addr()
	start := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	pmac, err := st.ResolveLink(rctx, peer)
	rcancel()
	switch {
	case err != nil && ctx.Err() != nil:
	case err != nil:
		r.fail("ARP %v: %v", peer, err)
	default:
		r.printf("arp: %v is at %v\n", peer, pmac)
		res := workload.PingContext(ctx, st, peer, o.pingCount, o.pingSize, o.pingInterval, o.pingTimeout)
		r.printf("ping %v: %v\n", peer, res)
		if res.Received != res.Sent && ctx.Err() == nil {
			r.fail("ping %v: %d of %d echo replies (first error: %v)", peer, res.Received, res.Sent, res.FirstErr)
		}
	}
	elapsed := time.Since(start)
	stopWatch()
	st.Close()
	sctx, scancel := stopCtx()
	defer scancel()
	if err := d.Stop(sctx); err != nil {
		r.fail("%v", err)
	}
	s := d.Stats()
	r.printf("driver %s after %v: %+v\n", dc.Name, elapsed.Round(time.Millisecond), s)
	if s.TxAccounted() != s.TxOffered {
		r.unaccounted(&topology.Imbalance{Direction: dc.Name + "->peer", Op: "==", Left: s.TxAccounted(), Right: s.TxOffered,
			Equation: fmt.Sprintf("driver %s: %d accounted != %d offered", dc.Name, s.TxAccounted(), s.TxOffered)})
	}
	ns := st.Stats()
	if ns.Received != s.RxPackets {
		r.unaccounted(&topology.Imbalance{Direction: "peer->" + dc.Name, Op: "==", Left: ns.Received, Right: s.RxPackets,
			Equation: fmt.Sprintf("host %s: received %d != %d delivered by the driver", dc.Name, ns.Received, s.RxPackets)})
	}
	// One node: the chips and the cable are not all in view, so only the
	// driver's and the host's own counters can name losses.
	r.lose(topology.DriverLosses(dc.Name, s)...)
	r.lose(topology.Loss{Count: ns.QueueDropped, Where: fmt.Sprintf("dropped at netstack %s's transmit queue (full)", dc.Name)})
	return nil
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
