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
	"tsnsim/fault"
	"tsnsim/pcap"
	"tsnsim/rtimer"
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
	goTrace  string

	txRing       int
	xmitClock    string
	modelWakeups bool
	openBudget   time.Duration
	modelOptions
	fieldOptions
	faultOptions
	hardwareOptions
	stackOptions
	framesOptions
	tapOptions
	tsnOptions
	ptpOptions
	ptpRun *ptpSession // --ptp: the ports, started by buildTopology

	stall     time.Duration
	verbosity int

	// ctx is the run's context: the first SIGINT/SIGTERM cancels it
	// (cause *interrupted), and so does the stall watchdog (*stalled).
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (o *runOptions) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&o.backend, "backend", backendNetstack, "host side of each node: netstack (embedded userspace TCP/IP stack, rootless), tap (TAP device and the Linux stack, root), frames (numbered test frames, no stack)")
	fs.StringVar(&o.pcap, "pcap", "", "write every frame on the virtual cable to this pcap file (emulated timestamps)")
	fs.StringVar(&o.spiTrace, "spi-trace", "", "write every SPI transaction of both nodes, and their chips' PPS edges, to this file, one JSON line each (summarise it with tsnsim trace FILE)")
	fs.StringVar(&o.goTrace, "go-trace", "", "write a Go execution trace of the run to this file: which goroutine ran where and when, and each SPI bus wait of this process's buses (with --attach they are the server's: chip serve --go-trace) as a log event of category spibridge.wait; tsnsim trace FILE says why the waits that ended late were late, go tool trace FILE shows everything. It grows by about 2 MB a second with the buses busy")
	fs.IntVar(&o.txRing, "tx-ring", driver.DefaultTxRingSize, "driver TX ring entries. The driver stops its queue when the ring is full and the qdisc holds frames, so even 1 loses nothing (ping -i 0.01 both ways over TAP: 0 loss, as with 64); the field driver's loss is --field-driver tx-slot")
	fs.StringVar(&o.xmitClock, "xmit-clock", "none", "none: the driver core never touches SPI when transmitting (its design); spi: read SYSCOUNT over the shared bus in every transmit as if transmit could sleep: transmits wait for the bus (the report shows the wait; arping -W 0.05 both ways over TAP: waits up to tens of ms, 0 timeouts, 0 loss), nothing fails. The field driver's failure (BUG: scheduling while atomic, -110 timeouts, TX stall) is --field-driver xmit-clock")
	fs.BoolVar(&o.modelWakeups, "model-wakeups", false, "take the drivers' late wake-ups out of the SPI timeline: the first transfer after a driver's worker woke late for an interrupt edge or a frame to send starts, in the model, when it would have woken in virtual time, so frames keep the model's timing (TAP ping p50 80-100µs lower on the project's VM) but that transfer returns sooner than its time on the bus (tsnsim trace counts it as short). Off: the wake-ups take the time they take, as a real host's scheduling latency does. Needs the chips in this process and the SPI timing model")
	fs.DurationVar(&o.openBudget, "open-budget", driver.DefaultOpenBudget, "how long each driver's Open (and Stop) may retry its register accesses on a failing SPI bus, with backoff, before giving up")
	o.modelOptions.addFlags(fs)
	o.fieldOptions.addFlags(fs)
	o.faultOptions.addFlags(fs)
	o.hardwareOptions.addFlags(fs)
	o.stackOptions.addFlags(fs)
	o.framesOptions.addFlags(fs)
	o.tapOptions.addFlags(fs)
	o.tsnOptions.addFlags(fs)
	o.ptpOptions.addFlags(fs)
	fs.DurationVar(&o.stall, "stall-timeout", 0, "give up when a driver keeps frames on its TX ring and completes none for this long: print the report and the error, exit 1 (0: 10s past the longest --fault window)")
	fs.CountVarP(&o.verbosity, "verbose", "v", "log more: -v info, -vv debug (never one line per frame)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tsnsim run [flags]\n\n"+
			"Runs two emulated LAN1QTSN nodes (chip + SPI bus + driver core) joined by a\n"+
			"virtual cable. With the default netstack backend each node gets an embedded\n"+
			"TCP/IP stack: tsnsim resolves ARP, pings both ways at once and moves TCP bulk\n"+
			"data each way, then prints RTTs, loss, throughput and every counter. With\n"+
			"--backend tap each node is a TAP device for the Linux stack (ping, arping,\n"+
			"iperf3, tcpdump).\n\n"+
			"SIGINT or SIGTERM stops a run gracefully (traffic, drivers, drain, audit,\n"+
			"full report); a second signal exits at once (status 128+signal, no report).\n"+
			"The last line of the report is the verdict, and the exit status follows it:\n"+
			"  CLEAN                  0  everything offered was delivered\n"+
			"  LOSS: N WHERE, ...     1  frames lost, each counted where it was lost (or\n"+
			"                            the run failed: \"; run failed: WHY\")\n"+
			"  UNACCOUNTED: EQ off by N\n"+
			"                         3  a counter equation does not hold (a ledger bug)\n"+
			"A bad command line exits 2.\n\n"+
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
	case o.modelWakeups && (len(o.attach) > 0 || o.spidev != ""):
		return fmt.Errorf("--model-wakeups works on the in-process SPI bus only, not with --attach or --spidev")
	case o.modelWakeups && o.spiClock == 0:
		return fmt.Errorf("--model-wakeups needs the SPI timing model (--spi-clock 0 turns it off)")
	case o.stall < 0:
		return fmt.Errorf("--stall-timeout must not be negative")
	}
	if o.openBudget <= 0 {
		return fmt.Errorf("--open-budget %v: must be positive", o.openBudget)
	}
	if err := o.modelOptions.validate(); err != nil {
		return err
	}
	if err := o.fieldOptions.validate(o.backend); err != nil {
		return err
	}
	if err := o.faultOptions.validate(); err != nil {
		return err
	}
	if err := o.hardwareOptions.validate(o.backend); err != nil {
		return err
	}
	if err := o.validateNode(); err != nil {
		return err
	}
	if err := o.tsnOptions.validate(o.backend, len(o.attach) > 0 || o.spidev != "", o.ptp); err != nil {
		return err
	}
	if err := o.ptpOptions.validate(o.backend, len(o.attach) > 0 || o.spidev != ""); err != nil {
		return err
	}
	if o.field != 0 && (o.tsn() || o.ptp) {
		return fmt.Errorf("--field-driver reproduces the field driver, which had no TSN support: it cannot be combined with --taprio, --clock-model or --ptp")
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

	preciseTimer bool
	timerSpin    time.Duration
	idleSpin     time.Duration
	timer        *rtimer.Service // started by startTimer
}

func (o *modelOptions) addFlags(fs *pflag.FlagSet) {
	fs.Int64Var(&o.spiClock, "spi-clock", spibridge.DefaultClockHz, "SPI clock in Hz; 0 turns the SPI timing model off (unthrottled)")
	fs.DurationVar(&o.spiOverhead, "spi-overhead", spibridge.DefaultOverhead, "per-transfer host overhead, bus held")
	fs.DurationVar(&o.spiTimeout, "spi-timeout", 0, "per-transfer timeout, from when the transfer starts on the bus (waiting for the bus is not timed, as spi_sync); 0 uses the Linux 6.x formula max(len*16/kHz, 500) ms")
	fs.Int64Var(&o.linkSpeed, "link-speed", chip.DefaultLinkBitsPerSec, "Ethernet link speed in bit/s; 0 turns serialisation timing off")
	fs.DurationVar(&o.cableDelay, "cable-delay", cable.DefaultPropagation, "cable propagation delay")
	fs.IntVar(&o.hostFIFO, "host-fifo", chip.DefaultHostFIFOFrames, "chip host TX FIFO capacity in frames (max 1023)")
	fs.IntVar(&o.rxFrameFIFO, "rx-frame-fifo", chip.DefaultRxFrameFIFOWords, "chip RX frame FIFO capacity in 16-byte words (max 8191)")
	fs.IntVar(&o.rxMetaFIFO, "rx-meta-fifo", chip.DefaultRxMetaFIFOSize, "chip RX metadata FIFO capacity in entries (max 511)")
	fs.BoolVar(&o.preciseTimer, "precise-timer", true, "the SPI buses, transmitters and cable wait through a timerfd (Linux), late by tens of µs; false: Go timers, late by about 1 ms per wait")
	fs.DurationVar(&o.timerSpin, "timer-spin", rtimer.DefaultSpin, "the precise timer ends each wait by polling the clock for up to this long (as spi-bcm2835 polls transfers under 30µs), so waits end within a few µs instead of 15-40µs late; more cuts the tail of long waits woken from idle (80µs: TX writes' p99 lateness 32-41µs instead of 45-121µs) for about 20-40% more CPU under load; 0: no polling (epoll wake-ups only, which cost about as much CPU)")
	fs.DurationVar(&o.idleSpin, "timer-spin-idle", rtimer.DefaultIdleSpin, "the poll of a wait that starts after the timers were idle for 1ms (the first SPI transfer of a burst, such as a ping's TX write), if longer than --timer-spin: a CPU that was idle wakes later (on the project's VM the TX write of a ping every 20ms returned 11µs after its modelled end at p50 instead of 32-36µs, and TAP ping p50 was 30-45µs lower); it costs CPU once a burst, not under load (ping -f and iperf3 cost the same); 0: as --timer-spin")
}

// preciseTimers lets runs start the precise timer service; tests that
// run tsnsim in a synctest bubble turn it off (its goroutine waits in a
// read(2) of a timerfd, which virtual time cannot see past).
var preciseTimers = true

// startTimer starts the precise timer service the emulated hardware of a
// real-time run waits through (--precise-timer); where there is no
// timerfd it warns and the run uses Go timers. stopTimer closes it.
func (o *modelOptions) startTimer(log *zap.Logger) error {
	if !o.preciseTimer || !preciseTimers {
		return nil
	}
	rt, err := rtimer.Start()
	if errors.Is(err, rtimer.ErrUnsupported) {
		log.Warn("no precise timer on this system: waits below a millisecond take about a millisecond", zap.Error(err))
		return nil
	}
	if err != nil {
		return err
	}
	rt.SetSpin(o.timerSpin)
	rt.SetIdleSpin(o.idleSpin)
	o.timer = rt
	return nil
}

// stopTimer closes the timer service, after the hardware has stopped.
func (o *modelOptions) stopTimer(log *zap.Logger) {
	if err := o.timer.Close(); err != nil {
		log.Error("closing the precise timer", zap.Error(err))
	}
}

// reportTimer prints how the precise timer kept time, if the run used it.
func (o *modelOptions) reportTimer(r *outcome) {
	if o.timer == nil {
		return
	}
	st := o.timer.Stats()
	var avg time.Duration
	if st.Fired > 0 {
		avg = st.Late / time.Duration(st.Fired)
	}
	r.printf("precise timer: %d waits, fired %v late on average, %v at most", st.Fired, avg.Round(time.Microsecond), st.MaxLate.Round(time.Microsecond))
	if st.Polled > 0 {
		r.printf("; %v spent polling their ends (--timer-spin)", st.Polled.Round(time.Millisecond))
	}
	if st.Fallbacks > 0 {
		r.printf(", %d through Go timers (%d timerfd errors)", st.Fallbacks, st.ArmErrors)
	}
	r.printf("\n")
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
	case o.timerSpin < 0 || o.timerSpin > time.Millisecond:
		return fmt.Errorf("--timer-spin %v: want 0 (no polling) to 1ms", o.timerSpin)
	case o.idleSpin < 0 || o.idleSpin > time.Millisecond:
		return fmt.Errorf("--timer-spin-idle %v: want 0 (as --timer-spin) to 1ms", o.idleSpin)
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
		Timer:  o.timer,
		Logger: log,
	}
	if capture != nil {
		cfg.Cable.Monitor = func(_ int, frame []byte, sof time.Time) { capture.Write(frame, sof) }
	}
	return cfg
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

	r := &outcome{out: stdout}
	// At a second signal the files are closed, so each ends at a record.
	var atExit exitHooks
	sigCtx, release := watchSignals(stderr, atExit.run)
	defer release()
	o.ctx, o.cancel = context.WithCancelCause(sigCtx)
	defer o.cancel(nil)

	var gt *goTrace
	if o.goTrace != "" {
		var err error
		if gt, err = startGoTrace(o.goTrace); err != nil {
			r.fail("%v", err)
			return r.finish()
		}
		atExit.add(func() { gt.stop() })
		defer gt.stop()
	}
	var capture *pcap.Writer
	if o.pcap != "" {
		var err error
		if capture, err = pcap.Create(o.pcap); err != nil {
			r.fail("%v", err)
			return r.finish()
		}
		atExit.add(func() { capture.Close() })
	}
	if len(o.attach) == 0 && o.spidev == "" { // the emulated hardware runs here
		if err := o.startTimer(log); err != nil {
			r.fail("%v", err)
			return r.finish()
		}
		defer o.stopTimer(log)
	}
	cfg := o.topologyConfig(log, capture).WithDefaults()
	cfg.Driver = driver.Config{TxRingSize: o.txRing, OpenBudget: o.openBudget, ModelWakeups: o.modelWakeups}
	if o.xmitClock == "spi" {
		cfg.Driver.XmitClock = driver.XmitClockSPI
	}
	o.fieldOptions.apply(&cfg)
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
		r.fail("%v", err)
		return r.finish()
	}
	var trace *spitrace.Writer
	if o.spiTrace != "" {
		var err error
		if trace, err = spitrace.Create(o.spiTrace, cfg.Chip.Epoch); err != nil {
			stopControl()
			r.fail("%v", err)
			return r.finish()
		}
		atExit.add(func() { trace.Close() })
		o.trace = trace
		cfg.Chip.OnPPS = func(node string, e chip.PPSEdge) { trace.RecordPPS(node, e.At, e.Seq, e.Count) }
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
	switch cause := context.Cause(o.ctx); {
	case o.ctx.Err() == nil:
	case stopped(o.ctx) == nil:
		r.printf("%v: stopped gracefully\n", cause)
	default:
		r.failFirst(cause)
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
	o.reportTimer(r)
	if gt != nil {
		if err := gt.stop(); err != nil {
			r.fail("%v", err)
		} else {
			r.printf("go trace: written to %s (tsnsim trace %s; go tool trace %s)\n", o.goTrace, o.goTrace, o.goTrace)
		}
	}
	return r.finish()
}

// exitHooks are what a second signal runs before the process exits.
type exitHooks struct {
	mu    sync.Mutex
	hooks []func()
}

func (h *exitHooks) add(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks = append(h.hooks, f)
}

func (h *exitHooks) run() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.hooks {
		f()
	}
}

// watch starts the stall watchdog over topo's drivers (--stall-timeout)
// and the watch for a deadlock their lock watchdogs find; the returned
// function stops both.
func (o *runOptions) watch(topo *topology.Topology, r *outcome) func() {
	stopProgress := watchProgress(o.ctx, o.cancel, []*driver.Driver{topo.Nodes[0].Driver, topo.Nodes[1].Driver},
		[]string{topo.Nodes[0].Name, topo.Nodes[1].Name}, o.stallTimeout())
	stopDeadlock := watchDeadlock(o.ctx, o.cancel, topo, r)
	return func() {
		stopProgress()
		stopDeadlock()
	}
}

// stallTimeout is --stall-timeout, or its automatic value: 10 s past the
// longest fault window given to this run.
func (o *runOptions) stallTimeout() time.Duration {
	if o.stall != 0 {
		return o.stall
	}
	longest := time.Duration(0)
	for _, specs := range [][]fault.Spec{o.planned.Faults, o.specs} {
		for _, s := range specs {
			longest = max(longest, s.Duration)
		}
	}
	return defaultStallMargin + longest
}

// defaultStallMargin is how long past the longest fault window a run
// waits for a stalled link before it gives up (--stall-timeout 0).
const defaultStallMargin = 10 * time.Second

// drainTimeout bounds the wait for frames in flight at the end of a run.
const drainTimeout = 2 * time.Second

// drain waits for the frames in flight to be delivered (topology.Drain),
// so that the end of a run does not cut them off; what is still queued
// after drainTimeout is reported as left in its queue. gPTP (--ptp) is
// traffic too: its ports stop sending first (after its --ptp-time), or a
// Sync sent during the drain is still in flight when the drivers stop.
func drain(topo *topology.Topology, r *outcome) {
	r.ptp.stop()
	if !topo.Drain(context.Background(), drainTimeout) {
		r.printf("drain: frames still queued after %v (listed below as left in their queues)\n", drainTimeout)
	}
}

// startFailed ends a run whose topology did not start (an open that ran
// out of time, an interrupted start-up): it stops what started and
// prints the report and the audit of what happened so far; received[i]
// is what node i's host took. The caller returns err.
func startFailed(topo *topology.Topology, r *outcome, err error, received [2]uint64) error {
	r.printf("start-up failed: %v\n", err)
	closeTopology(topo, r)
	topo.WriteReport(r.out, 0)
	r.audit(topo, received)
	return err
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
