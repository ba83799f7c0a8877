package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/driver"
	"tsnsim/pcap"
	"tsnsim/spibridge"
	"tsnsim/spitrace"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// Backends of tsnsim run.
const (
	backendNetstack = "netstack"
	backendTAP      = "tap"
	backendFrames   = "frames"
)

// runOptions are the flags of tsnsim run.
type runOptions struct {
	backend  string
	pcap     string
	spiTrace string

	txRing    int
	xmitClock string
	modelOptions
	faultOptions
	hardwareOptions
	stackOptions
	framesOptions
	tapOptions
	tsnOptions
	ptpOptions
	ptpRun *ptpSession // --ptp: the ports, started by buildTopology

	verbosity int
}

func (o *runOptions) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&o.backend, "backend", backendNetstack, "host side of each node: netstack (embedded userspace TCP/IP stack, rootless), tap (TAP device and the Linux stack, root), frames (numbered test frames, no stack)")
	fs.StringVar(&o.pcap, "pcap", "", "write every frame on the virtual cable to this pcap file (emulated timestamps)")
	fs.StringVar(&o.spiTrace, "spi-trace", "", "write every SPI transaction of both nodes to this file, one JSON line each (summarise it with tsnsim trace FILE)")
	fs.IntVar(&o.txRing, "tx-ring", driver.DefaultTxRingSize, "driver TX ring entries (1 reproduces the field driver's loss)")
	fs.StringVar(&o.xmitClock, "xmit-clock", "none", "none: the driver core never touches SPI when transmitting (its design); spi: read SYSCOUNT over the shared bus in every transmit, like the field driver (chip.md section 6, scenario 2)")
	o.modelOptions.addFlags(fs)
	o.faultOptions.addFlags(fs)
	o.hardwareOptions.addFlags(fs)
	o.stackOptions.addFlags(fs)
	o.framesOptions.addFlags(fs)
	o.tapOptions.addFlags(fs)
	o.tsnOptions.addFlags(fs)
	o.ptpOptions.addFlags(fs)
	fs.CountVarP(&o.verbosity, "verbose", "v", "log more: -v info, -vv debug (never one line per frame)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tsnsim run [flags]\n\n"+
			"Runs two emulated LAN1QTSN nodes (chip + SPI bus + driver core) joined by a\n"+
			"virtual cable. With the default netstack backend each node gets an embedded\n"+
			"TCP/IP stack: tsnsim resolves ARP, pings both ways at once and moves TCP bulk\n"+
			"data each way, then prints RTTs, loss, throughput and every counter. With\n"+
			"--backend tap each node is a TAP device for the Linux stack (ping, arping,\n"+
			"iperf3, tcpdump). Exits 1 if anything is lost, corrupted or not accounted for.\n\n"+
			"Flags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func (o *runOptions) validate() error {
	switch {
	case o.backend != backendNetstack && o.backend != backendTAP && o.backend != backendFrames:
		return fmt.Errorf("--backend %q: want %s, %s or %s", o.backend, backendNetstack, backendTAP, backendFrames)
	case o.txRing < 1:
		return fmt.Errorf("--tx-ring %d: want at least 1", o.txRing)
	case o.xmitClock != "none" && o.xmitClock != "spi":
		return fmt.Errorf("--xmit-clock %q: want none or spi", o.xmitClock)
	}
	if err := o.modelOptions.validate(); err != nil {
		return err
	}
	if err := o.faultOptions.validate(); err != nil {
		return err
	}
	if err := o.hardwareOptions.validate(o.backend); err != nil {
		return err
	}
	if err := o.tsnOptions.validate(o.backend, len(o.attach) > 0 || o.spidev != "", o.ptp); err != nil {
		return err
	}
	if err := o.ptpOptions.validate(o.backend, len(o.attach) > 0 || o.spidev != ""); err != nil {
		return err
	}
	if len(o.attach) > 0 || o.spidev != "" {
		if o.faultOptions.anything {
			return fmt.Errorf("faults act on the emulated chips: give them to tsnsim chip serve, not to run --attach or --spidev")
		}
		if o.pcap != "" {
			return fmt.Errorf("--pcap records the emulated cable: give it to tsnsim chip serve, not to run --attach or --spidev")
		}
	}
	switch o.backend {
	case backendNetstack:
		return o.stackOptions.validate()
	case backendFrames:
		return o.framesOptions.validate()
	case backendTAP:
		return o.tapOptions.validate()
	}
	return nil
}

// modelOptions are the flags of the emulated hardware: chips, SPI buses
// and cable; tsnsim run and tsnsim chip serve share them.
type modelOptions struct {
	spiClock    int64
	spiOverhead time.Duration
	spiTimeout  time.Duration
	linkSpeed   int64
	cableDelay  time.Duration
	hostFIFO    int
	rxFrameFIFO int
	rxMetaFIFO  int
}

func (o *modelOptions) addFlags(fs *pflag.FlagSet) {
	fs.Int64Var(&o.spiClock, "spi-clock", spibridge.DefaultClockHz, "SPI clock in Hz; 0 turns the SPI timing model off (unthrottled)")
	fs.DurationVar(&o.spiOverhead, "spi-overhead", spibridge.DefaultOverhead, "per-transfer host overhead, bus held")
	fs.DurationVar(&o.spiTimeout, "spi-timeout", 0, "per-transfer timeout; 0 uses the Linux 6.x formula max(len*16/kHz, 500) ms")
	fs.Int64Var(&o.linkSpeed, "link-speed", chip.DefaultLinkBitsPerSec, "Ethernet link speed in bit/s; 0 turns serialisation timing off")
	fs.DurationVar(&o.cableDelay, "cable-delay", cable.DefaultPropagation, "cable propagation delay")
	fs.IntVar(&o.hostFIFO, "host-fifo", chip.DefaultHostFIFOFrames, "chip host TX FIFO capacity in frames (max 1023)")
	fs.IntVar(&o.rxFrameFIFO, "rx-frame-fifo", chip.DefaultRxFrameFIFOWords, "chip RX frame FIFO capacity in 16-byte words (max 8191)")
	fs.IntVar(&o.rxMetaFIFO, "rx-meta-fifo", chip.DefaultRxMetaFIFOSize, "chip RX metadata FIFO capacity in entries (max 511)")
}

func (o *modelOptions) validate() error {
	switch {
	case o.spiClock < 0:
		return fmt.Errorf("--spi-clock %d: want 0 (off) or a positive frequency", o.spiClock)
	case o.spiOverhead < 0 || o.spiTimeout < 0 || o.cableDelay < 0:
		return fmt.Errorf("--spi-overhead, --spi-timeout and --cable-delay must not be negative")
	case o.linkSpeed < 0:
		return fmt.Errorf("--link-speed %d: want 0 (off) or a positive rate", o.linkSpeed)
	case o.hostFIFO < 1 || o.hostFIFO > 1023:
		return fmt.Errorf("--host-fifo %d: want 1-1023", o.hostFIFO)
	case o.rxFrameFIFO < 98 || o.rxFrameFIFO > 8191:
		return fmt.Errorf("--rx-frame-fifo %d: want 98-8191 (at least one 1560-byte frame)", o.rxFrameFIFO)
	case o.rxMetaFIFO < 1 || o.rxMetaFIFO > 511:
		return fmt.Errorf("--rx-meta-fifo %d: want 1-511", o.rxMetaFIFO)
	}
	return nil
}

// topologyConfig is the emulated hardware as the flags set it.
func (o *modelOptions) topologyConfig(log *zap.Logger, capture *pcap.Writer) topology.Config {
	link := o.linkSpeed
	if link == 0 {
		link = -1
	}
	delay := o.cableDelay
	if delay == 0 {
		delay = -1
	}
	cfg := topology.Config{
		Chip: chip.Config{
			HostFIFOFrames: o.hostFIFO, RxFrameFIFOWords: o.rxFrameFIFO, RxMetaFIFOSize: o.rxMetaFIFO,
			LinkBitsPerSec: link,
		},
		SPI:    spibridge.Timing{ClockHz: o.spiClock, Overhead: o.spiOverhead, Timeout: o.spiTimeout},
		Cable:  cable.Config{LinkBitsPerSec: link, Propagation: delay},
		Logger: log,
	}
	if capture != nil {
		cfg.Cable.Monitor = func(_ int, frame []byte, sof time.Time) { capture.Write(frame, sof) }
	}
	return cfg
}

// outcome collects the verdict and the printed report of a run. Its
// methods are safe for concurrent use.
type outcome struct {
	mu     sync.Mutex
	out    io.Writer
	failed bool
	ptp    *ptpSession // --ptp: PTP frames the ports took count as delivered
}

func (r *outcome) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, format, args...)
}

func (r *outcome) fail(format string, args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	r.printf("FAIL: "+format+"\n", args...)
}

func (r *outcome) hasFailed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// audit checks every counter equation of both directions; delivered[i]
// is what node i's host took from its driver.
func (r *outcome) audit(topo *topology.Topology, delivered [2]uint64) {
	for i := range 2 {
		delivered[1-i] += r.ptp.delivered(1 - i)
		for _, err := range topo.Audit(i, delivered[1-i]) {
			r.fail("unaccounted: %v", err)
		}
	}
}

func runCommand(args []string, stdout, stderr io.Writer) int {
	var o runOptions
	if ok, status := parseFlags(o.flags(), args, stdout, stderr); !ok {
		return status
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "tsnsim run: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, o.verbosity)
	defer log.Sync() //nolint:errcheck // nothing to do about a failed stderr sync

	var capture *pcap.Writer
	if o.pcap != "" {
		var err error
		if capture, err = pcap.Create(o.pcap); err != nil {
			fmt.Fprintf(stderr, "tsnsim run: %v\n", err)
			return exitFail
		}
	}
	r := &outcome{out: stdout}
	cfg := o.topologyConfig(log, capture).WithDefaults()
	cfg.Driver = driver.Config{TxRingSize: o.txRing}
	if o.xmitClock == "spi" {
		cfg.Driver.XmitClock = driver.XmitClockSPI
	}
	o.tsnOptions.apply(&cfg, o.ptp)
	if o.ptp {
		o.ptpRun = newPTPSession(&o.ptpOptions, r)
		r.ptp = o.ptpRun
		o.ptpOptions.apply(&cfg, o.ptpRun)
	}
	inj, err := o.injector(cfg.Chip.Epoch, log)
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim run: %v\n", err)
		return exitUsage
	}
	if inj != nil {
		defer inj.Close()
		cfg.Faults = inj
	}
	stopControl, err := o.serveControl(inj, r)
	if err != nil {
		fmt.Fprintf(stderr, "tsnsim run: %v\n", err)
		return exitFail
	}
	var trace *spitrace.Writer
	if o.spiTrace != "" {
		var err error
		if trace, err = spitrace.Create(o.spiTrace, cfg.Chip.Epoch); err != nil {
			fmt.Fprintf(stderr, "tsnsim run: %v\n", err)
			return exitFail
		}
		o.trace = trace
		cfg.Transport = func(i int, bus *spibridge.InProcess) (spibridge.Transport, io.Closer, error) {
			return o.traced(cfg.Names[i], bus), nil, nil
		}
	}
	switch {
	case o.single():
		err = runSingle(&o, cfg, r)
	case o.backend == backendNetstack:
		err = runStack(&o, cfg, r)
	case o.backend == backendTAP:
		err = runTAP(&o, cfg, r, log)
	case o.tsn():
		err = runTSN(&o, cfg, r)
	case o.backend == backendFrames:
		err = runFrames(&o, cfg, r)
	}
	if err != nil {
		r.fail("%v", err)
	}
	o.ptpRun.report(r)
	stopControl()
	reportFaults(r, inj)
	if capture != nil {
		if err := capture.Close(); err != nil {
			r.fail("%v", err)
		} else {
			r.printf("pcap: %d frames written to %s\n", capture.Frames(), o.pcap)
		}
	}
	if trace != nil {
		if err := trace.Close(); err != nil {
			r.fail("%v", err)
		} else {
			r.printf("spi trace: %d transactions written to %s (tsnsim trace %s)\n", trace.Written(), o.spiTrace, o.spiTrace)
		}
	}
	if r.hasFailed() {
		return exitFail
	}
	fmt.Fprintln(stdout, "PASS: nothing lost, nothing corrupted; every frame accounted for")
	return 0
}

// closeTopology stops topo within a bound and reports what failed.
func closeTopology(topo *topology.Topology, r *outcome) {
	r.ptp.stop() // --ptp: runs its --ptp-time first
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := topo.Close(ctx); err != nil {
		r.fail("%v", err)
	}
}

// framesOptions are the flags of the frames backend.
type framesOptions struct {
	frames    uint64
	frameSize int
	idle      time.Duration
}

func (o *framesOptions) addFlags(fs *pflag.FlagSet) {
	fs.Uint64Var(&o.frames, "frames", 2000, "frames backend: test frames to send each way")
	fs.IntVar(&o.frameSize, "frame-size", 0, "frames backend: frame size without FCS, 60-1514; 0 mixes sizes over that range")
	fs.DurationVar(&o.idle, "idle-timeout", 5*time.Second, "frames backend: give up when no frame has arrived for this long")
}

func (o *framesOptions) validate() error {
	switch {
	case o.frameSize != 0 && (o.frameSize < traffic.MinSize || o.frameSize > traffic.MaxSize):
		return fmt.Errorf("--frame-size %d: want 0 (mixed) or %d-%d", o.frameSize, traffic.MinSize, traffic.MaxSize)
	case o.idle <= 0:
		return fmt.Errorf("--idle-timeout must be positive")
	}
	return nil
}

// buildTopology builds the two nodes the flags describe: in-process
// chips, or drivers attached to a chip server.
func (o *runOptions) buildTopology(cfg topology.Config, receive [2]func([]byte) bool) (*topology.Topology, error) {
	if len(o.attach) == 2 {
		return o.attachTopology(cfg, receive)
	}
	topo, err := topology.New(cfg, receive)
	if err == nil {
		o.setDrift(topo)
	}
	if err == nil && o.ptpRun != nil {
		if err = o.ptpRun.begin(topo); err != nil {
			err = errors.Join(err, topo.Close(context.Background()))
		}
	}
	return topo, err
}
