package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/cable"
	"tsnsim/chip"
	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/topology"
	"tsnsim/traffic"
)

// runOptions are the flags of tsnsim run.
type runOptions struct {
	frames      uint64
	frameSize   int
	txRing      int
	spiClock    int64
	spiOverhead time.Duration
	spiTimeout  time.Duration
	linkSpeed   int64
	cableDelay  time.Duration
	hostFIFO    int
	rxFrameFIFO int
	rxMetaFIFO  int
	idle        time.Duration
	verbosity   int
}

func (o *runOptions) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Uint64Var(&o.frames, "frames", 2000, "test frames to send each way")
	fs.IntVar(&o.frameSize, "frame-size", 0, "frame size in bytes without FCS, 60-1514; 0 mixes sizes over that range")
	fs.IntVar(&o.txRing, "tx-ring", driver.DefaultTxRingSize, "driver TX ring entries (1 reproduces the field driver's loss)")
	fs.Int64Var(&o.spiClock, "spi-clock", spibridge.DefaultClockHz, "SPI clock in Hz; 0 turns the SPI timing model off (unthrottled)")
	fs.DurationVar(&o.spiOverhead, "spi-overhead", spibridge.DefaultOverhead, "per-transfer host overhead, bus held")
	fs.DurationVar(&o.spiTimeout, "spi-timeout", 0, "per-transfer timeout; 0 uses the Linux 6.x formula max(len*16/kHz, 500) ms")
	fs.Int64Var(&o.linkSpeed, "link-speed", chip.DefaultLinkBitsPerSec, "Ethernet link speed in bit/s; 0 turns serialisation timing off")
	fs.DurationVar(&o.cableDelay, "cable-delay", cable.DefaultPropagation, "cable propagation delay")
	fs.IntVar(&o.hostFIFO, "host-fifo", chip.DefaultHostFIFOFrames, "chip host TX FIFO capacity in frames (max 1023)")
	fs.IntVar(&o.rxFrameFIFO, "rx-frame-fifo", chip.DefaultRxFrameFIFOWords, "chip RX frame FIFO capacity in 16-byte words (max 8191)")
	fs.IntVar(&o.rxMetaFIFO, "rx-meta-fifo", chip.DefaultRxMetaFIFOSize, "chip RX metadata FIFO capacity in entries (max 511)")
	fs.DurationVar(&o.idle, "idle-timeout", 5*time.Second, "give up when no frame has arrived for this long")
	fs.CountVarP(&o.verbosity, "verbose", "v", "log more: -v info, -vv debug")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tsnsim run [flags]\n\n"+
			"Runs two emulated nodes (chip + SPI bus + driver core) joined by a virtual cable,\n"+
			"sends numbered test frames both ways at once, verifies every frame arrives once,\n"+
			"byte-identical and in order, and prints each node's counters. Exits 1 if a frame\n"+
			"is lost, corrupted or not accounted for.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func (o *runOptions) validate() error {
	switch {
	case o.frameSize != 0 && (o.frameSize < traffic.MinSize || o.frameSize > traffic.MaxSize):
		return fmt.Errorf("--frame-size %d: want 0 (mixed) or %d-%d", o.frameSize, traffic.MinSize, traffic.MaxSize)
	case o.txRing < 1:
		return fmt.Errorf("--tx-ring %d: want at least 1", o.txRing)
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
	case o.idle <= 0:
		return fmt.Errorf("--idle-timeout must be positive")
	}
	return nil
}

func (o *runOptions) topologyConfig(log *zap.Logger) topology.Config {
	link := o.linkSpeed
	if link == 0 {
		link = -1
	}
	delay := o.cableDelay
	if delay == 0 {
		delay = -1
	}
	return topology.Config{
		Chip: chip.Config{
			HostFIFOFrames: o.hostFIFO, RxFrameFIFOWords: o.rxFrameFIFO, RxMetaFIFOSize: o.rxMetaFIFO,
			LinkBitsPerSec: link,
		},
		SPI:    spibridge.Timing{ClockHz: o.spiClock, Overhead: o.spiOverhead, Timeout: o.spiTimeout},
		Cable:  cable.Config{LinkBitsPerSec: link, Propagation: delay},
		Driver: driver.Config{TxRingSize: o.txRing},
		Logger: log,
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
	defer log.Sync() //nolint:errcheck // stderr sync errors are not actionable

	ss := [2]traffic.Stream{
		{Src: topology.NodeMAC(0), Dst: topology.NodeMAC(1), Seed: 1, Size: o.frameSize},
		{Src: topology.NodeMAC(1), Dst: topology.NodeMAC(0), Seed: 2, Size: o.frameSize},
	}
	// checkers[i] checks what node i receives: the stream node 1-i sends.
	checkers := [2]*traffic.Checker{traffic.NewChecker(ss[1]), traffic.NewChecker(ss[0])}
	topo := topology.New(o.topologyConfig(log), [2]func([]byte) bool{checkers[0].Receive, checkers[1].Receive})

	ctx := context.Background()
	if err := topo.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "tsnsim run: %v\n", err)
		return exitFail
	}
	log.Info("topology up", zap.Uint64("frames", o.frames), zap.Int("size", o.frameSize))
	start := time.Now()
	var wg sync.WaitGroup
	var sendErrs [2]error
	for i := range 2 {
		wg.Go(func() {
			_, sendErrs[i] = traffic.Send(ctx, topo.Nodes[i].Driver, ss[i], o.frames, 0, traffic.Requeue)
		})
	}
	wg.Wait()
	for _, c := range checkers {
		c.WaitFor(ctx, o.frames, o.idle)
	}
	elapsed := time.Since(start)
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	closeErr := topo.Close(closeCtx)

	topo.WriteReport(stdout, elapsed)
	failed := false
	fail := func(format string, args ...any) {
		failed = true
		fmt.Fprintf(stdout, "FAIL: "+format+"\n", args...)
	}
	if closeErr != nil {
		fail("%v", closeErr)
	}
	for i := range 2 {
		src, dst := topo.Nodes[i].Name, topo.Nodes[1-i].Name
		if sendErrs[i] != nil {
			fail("%s: sending: %v", src, sendErrs[i])
		}
		r := checkers[1-i].Result()
		fmt.Fprintf(stdout, "%s->%s: %d/%d frames, %d bytes in %v: %.2f Mbit/s, %.0f frames/s\n",
			src, dst, r.Received, o.frames, r.Bytes, elapsed.Round(time.Millisecond),
			float64(r.Bytes)*8/elapsed.Seconds()/1e6, float64(r.Received)/elapsed.Seconds())
		if r.Received != o.frames || r.Gaps != 0 {
			fail("%s->%s: %d of %d frames arrived (%d skipped)", src, dst, r.Received, o.frames, r.Gaps)
		}
		for _, e := range r.Errors {
			fail("%s->%s: %s", src, dst, e)
		}
		if r.Foreign != 0 {
			fail("%s: %d frames of an unexpected kind", dst, r.Foreign)
		}
		for _, err := range topo.Audit(i, r.Received) {
			fail("unaccounted: %v", err)
		}
	}
	if failed {
		return exitFail
	}
	fmt.Fprintln(stdout, "PASS: every frame delivered once, byte-identical, in order; all counters add up")
	return 0
}
