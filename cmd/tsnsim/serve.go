package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/pcap"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// serveOptions are the flags of tsnsim chip serve.
type serveOptions struct {
	modelOptions
	faultOptions
	listen    []string
	socketDir string
	allowTCP  bool
	cableEnd  string
	node      string
	duration  time.Duration
	pcap      string
	verbosity int
}

func (o *serveOptions) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("chip serve", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringArrayVar(&o.listen, "listen", nil, "NODE=ADDR: serve NODE's SPI bus and interrupt line on ADDR, unix:PATH or (with --allow-tcp) tcp:HOST:PORT; repeatable (default: unix sockets a.sock and b.sock in --socket-dir)")
	fs.StringVar(&o.socketDir, "socket-dir", defaultSocketDir(), "directory of the default unix sockets (created with mode 0700)")
	fs.BoolVar(&o.allowTCP, "allow-tcp", false, "allow tcp: listen addresses (bound to 127.0.0.1 unless HOST says otherwise; the protocol has no authentication)")
	fs.StringVar(&o.cableEnd, "cable-end", "", "serve one chip (--node) and carry its cable end over a socket to another chip server or a QEMU NIC: stream-listen:unix:PATH, stream-connect:tcp:HOST:PORT, dgram:udp:LHOST:LPORT:RHOST:RPORT, ... (docs/cable-sockets.md)")
	fs.StringVar(&o.node, "node", "a", "with --cable-end: the node this server emulates, a or b (its name and MAC)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: serve until SIGINT or SIGTERM)")
	fs.StringVar(&o.pcap, "pcap", "", "write every frame on the virtual cable to this pcap file")
	o.modelOptions.addFlags(fs)
	o.faultOptions.addFlags(fs)
	fs.CountVarP(&o.verbosity, "verbose", "v", "log more: -v info, -vv debug")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tsnsim chip serve [flags]\n\n"+
			"Runs the emulated chips and their cable in this process and serves each chip's\n"+
			"SPI bus and interrupt line on its own socket (docs/socket-protocol.md), for\n"+
			"drivers in other processes: tsnsim run --attach ADDR --attach ADDR, or\n"+
			"tsnsim regs --attach ADDR. Clients may come and go; the chips keep their state.\n"+
			"On SIGINT/SIGTERM (or after --duration) it prints the chip-side counters.\n\n"+
			"Flags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// defaultSocketDir is $XDG_RUNTIME_DIR/tsnsim, else /tmp/tsnsim-UID.
func defaultSocketDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "tsnsim")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tsnsim-%d", os.Getuid()))
}

// served is one chip a server serves: its node index and address.
type served struct {
	node int
	addr string
}

func (o *serveOptions) validate() ([]served, error) {
	if err := o.modelOptions.validate(); err != nil {
		return nil, err
	}
	if err := o.faultOptions.validate(); err != nil {
		return nil, err
	}
	if o.duration < 0 {
		return nil, fmt.Errorf("--duration must not be negative")
	}
	if o.node != "a" && o.node != "b" {
		return nil, fmt.Errorf("--node %q: want a or b", o.node)
	}
	nodes := []int{0, 1}
	if o.cableEnd != "" {
		if _, err := cable.ParseSocketEnd(o.cableEnd); err != nil {
			return nil, fmt.Errorf("--cable-end: %w", err)
		}
		nodes = []int{int(o.node[0] - 'a')}
	}
	addrs := map[int]string{}
	for _, l := range o.listen {
		name, addr, ok := strings.Cut(l, "=")
		if !ok || (name != "a" && name != "b") {
			return nil, fmt.Errorf("--listen %q: want a=ADDR or b=ADDR", l)
		}
		network, _, err := spibridge.ParseSocketAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: %w", l, err)
		}
		if network != "unix" && !o.allowTCP {
			return nil, fmt.Errorf("--listen %q: TCP carries unauthenticated register access; pass --allow-tcp to use it", l)
		}
		addrs[int(name[0]-'a')] = addr
	}
	var out []served
	for _, i := range nodes {
		addr, ok := addrs[i]
		if !ok {
			addr = "unix:" + filepath.Join(o.socketDir, fmt.Sprintf("%c.sock", 'a'+i))
		}
		delete(addrs, i)
		out = append(out, served{i, addr})
	}
	for i := range addrs {
		return nil, fmt.Errorf("--listen: node %c is not served by this server", 'a'+i)
	}
	return out, nil
}

func serveCommand(args []string, stdout, stderr io.Writer) int {
	var o serveOptions
	if ok, status := parseFlags(o.flags(), args, stdout, stderr); !ok {
		return status
	}
	list, err := o.validate()
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim chip serve: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, o.verbosity)
	defer log.Sync() //nolint:errcheck // nothing to do about a failed stderr sync
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	r := &outcome{out: stdout}
	if err := serveChips(ctx, &o, list, r, log); err != nil {
		r.fail("%v", err)
	}
	if r.hasFailed() {
		return exitFail
	}
	return 0
}

// chipServer is one served chip.
type chipServer struct {
	served
	chip   *chip.Chip
	bus    *spibridge.InProcess
	server *spibridge.Server
}

// serveChips builds the chips and the cable, serves each chip until ctx
// is done, then closes everything and prints the chip-side report.
func serveChips(ctx context.Context, o *serveOptions, list []served, r *outcome, log *zap.Logger) error {
	if err := o.startTimer(log); err != nil {
		return err
	}
	defer o.stopTimer(log)
	var capture *pcap.Writer
	if o.pcap != "" {
		var err error
		if capture, err = pcap.Create(o.pcap); err != nil {
			return err
		}
	}
	cfg := o.topologyConfig(log, capture).WithDefaults()
	var chips []*chipServer
	for _, s := range list {
		c, bus := topology.NewChip(cfg, s.node)
		chips = append(chips, &chipServer{served: s, chip: c, bus: bus,
			server: spibridge.NewServer(bus, spibridge.ServerConfig{Name: c.Name(), Logger: log})})
	}
	var cab *cable.Cable
	var end *cable.SocketPort
	if o.cableEnd != "" {
		ec, _ := cable.ParseSocketEnd(o.cableEnd) // validated
		var err error
		if end, err = cable.OpenSocketEnd(ctx, ec, log); err != nil {
			return err
		}
		cab = cable.Connect(chips[0].chip, end, cfg.Cable)
		r.printf("cable end of %s: %s (%v)\n", chips[0].chip.Name(), o.cableEnd, end.Addr())
	} else {
		cab = cable.Connect(chips[0].chip, chips[1].chip, cfg.Cable)
	}
	inj, err := o.injector(cfg.Chip.Epoch, log)
	if err != nil {
		return err
	}
	if inj != nil {
		defer inj.Close()
		for i, c := range chips {
			if err := topology.InjectFaults(inj, c.chip, c.bus, cab, i); err != nil {
				return err
			}
		}
	}
	stopControl, err := o.serveControl(inj, r)
	if err != nil {
		return err
	}
	defer stopControl()
	for _, c := range chips {
		c.chip.Start()
	}
	start := time.Now()

	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	for _, c := range chips {
		if strings.HasPrefix(c.addr, "unix:") {
			if err := os.MkdirAll(filepath.Dir(strings.TrimPrefix(c.addr, "unix:")), 0o700); err != nil {
				return fmt.Errorf("socket directory: %w", err)
			}
		}
		ln, err := spibridge.ListenSocket(c.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", c.chip.Name(), err)
		}
		r.printf("chip %s (mac %s): SPI bus and interrupt line on %s\n", c.chip.Name(), c.chip.MAC(), c.addr)
		wg.Go(func() {
			if err := c.server.Serve(ctx, ln); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", c.chip.Name(), err))
				mu.Unlock()
			}
		})
	}
	r.printf("ready; attach with: tsnsim run")
	for _, c := range chips {
		r.printf(" --attach %s", c.addr)
	}
	r.printf("\n")
	<-ctx.Done()
	elapsed := time.Since(start)
	r.printf("stopping after %v\n", elapsed.Round(time.Millisecond))
	for _, c := range chips {
		if err := c.server.Close(); err != nil {
			r.fail("%s: %v", c.chip.Name(), err)
		}
	}
	wg.Wait()
	for _, c := range chips {
		c.chip.Close()
	}
	cab.Close()
	if end != nil {
		if err := end.Close(); err != nil {
			r.fail("cable end: %v", err)
		}
	}
	for _, c := range chips {
		c.bus.Close()
	}
	if capture != nil {
		if err := capture.Close(); err != nil {
			r.fail("%v", err)
		}
	}
	for _, err := range errs {
		r.fail("%v", err)
	}
	writeServeReport(r, chips, cab, end, elapsed)
	reportFaults(r, inj)
	return nil
}

// writeServeReport prints the chip side of every served chip, the
// servers' connection accounting, and the cable.
func writeServeReport(r *outcome, chips []*chipServer, cab *cable.Cable, end *cable.SocketPort, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range chips {
		fmt.Fprintf(r.out, "%s: mac %s, served on %s\n", c.chip.Name(), c.chip.MAC(), c.addr)
		fmt.Fprintf(r.out, "    server: %+v\n", c.server.Stats())
		topology.WriteChipReport(r.out, c.chip, c.bus, elapsed)
	}
	if end == nil {
		topology.WriteCableReport(r.out, chips[0].chip.Name(), chips[1].chip.Name(), cab)
		return
	}
	topology.WriteCableReport(r.out, chips[0].chip.Name(), "socket", cab)
	fmt.Fprintf(r.out, "cable end: %+v\n", end.Stats())
}

// chipCommand is tsnsim chip SUBCOMMAND.
func chipCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "serve" {
		return serveCommand(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "tsnsim chip: want the subcommand serve (tsnsim chip serve --help)\n")
	return exitUsage
}
