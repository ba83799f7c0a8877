package spibridge

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// SPIFaults decides, for each transfer that owns an InProcess bus, which
// faults to inject into it. The fault package implements it; a nil
// SPIFaults (the default) costs one atomic load per transfer.
type SPIFaults interface {
	// Decide is called once per transfer, while it owns the bus, with the
	// transfer's length and command byte (proto.CmdRead, proto.CmdWrite
	// or anything the host sent). It must not block.
	Decide(n int, cmd byte) SPIFault
}

// SPIFault is what happens to one transfer. The zero value is no fault.
// The effects apply while the transfer owns the bus, in this order:
//
//   - Stuck: the bus is held for Stuck first. If that reaches the
//     transfer's deadline, the transfer fails with ETIMEDOUT at its
//     deadline, the chip never sees it, and the bus stays held until
//     Stuck has passed (transfers queued behind it time out by the
//     normal rule).
//   - TimeoutBefore: the bus is held until the deadline, the chip is not
//     called, the transfer fails with ETIMEDOUT.
//   - Latency: extra hold before the chip decodes the transaction (a slow
//     spi_sync). If it pushes the transfer past its deadline, the
//     transfer times out by the normal rule.
//   - TimeoutAfter: the chip executes the transaction (its state
//     changes), then the bus is held until the deadline and the transfer
//     fails with ETIMEDOUT: the host cannot tell it from TimeoutBefore.
//   - FlipMISOBits: that many distinct bits of the read data the chip
//     clocked back (MISO from proto.ReadDataStart on) are inverted, at
//     positions drawn from a PCG seeded with FlipSeed. Applies to reads
//     that completed; capped at the number of data bits.
//
// Injected failures return a *FaultError.
type SPIFault struct {
	TimeoutBefore bool
	TimeoutAfter  bool
	Latency       time.Duration
	FlipMISOBits  int
	FlipSeed      uint64
	Stuck         time.Duration
}

// Kinds of injected SPI faults, as FaultError.FaultKind reports them.
const (
	FaultTimeoutBefore = "spi.timeout-before"
	FaultTimeoutAfter  = "spi.timeout-after"
	FaultLatency       = "spi.latency"
	FaultStuck         = "spi.stuck"
)

// FaultError is a transfer failure caused by an injected fault. It wraps
// syscall.ETIMEDOUT, as the kernel's error would, and names the fault so
// that a tracer can attribute it.
type FaultError struct {
	Kind string // one of the Fault* constants
	Err  error  // wraps syscall.ETIMEDOUT
}

// Error implements error.
func (e *FaultError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error, so errors.Is(err, syscall.ETIMEDOUT)
// holds.
func (e *FaultError) Unwrap() error { return e.Err }

// FaultKind names the injected fault, e.g. "spi.timeout-before".
func (e *FaultError) FaultKind() string { return e.Kind }

// SetFaults sets the fault source of the bus; nil removes it. Safe while
// transfers run: each transfer consults the source it finds when it gets
// the bus.
func (b *InProcess) SetFaults(f SPIFaults) {
	if f == nil {
		b.faults.Store(nil)
		return
	}
	b.faults.Store(&f)
}

// faulty runs a transfer that owns the bus (taken at start, issued at
// issued) with the injected fault f, releases the bus and accounts it.
// With the timing model off the faults' own durations still elapse: an
// injected timeout waits for the deadline, latency and stuck sleep.
func (b *InProcess) faulty(f SPIFault, tx, rx []byte, issued, start time.Time, timeout time.Duration) error {
	deadline := issued.Add(timeout)
	waited := start.Sub(issued)
	n := len(tx)
	var fs BusStats
	if f.Stuck > 0 {
		fs.FaultStuck = 1
		if end := start.Add(f.Stuck); !end.Before(deadline) {
			sleepUntil(deadline)
			b.unstickAt(end) // the bus stays held after the caller gives up
			b.accountFault(waited, f.Stuck, fs)
			return b.injected(FaultStuck, n, timeout)
		}
		time.Sleep(f.Stuck)
	}
	defer func() {
		b.lastEnd = time.Now()
		<-b.bus
	}()
	if f.TimeoutBefore {
		sleepUntil(deadline)
		fs.FaultTimeoutBefore = 1
		b.accountFault(waited, time.Since(start), fs)
		return b.injected(FaultTimeoutBefore, n, timeout)
	}
	model := b.timing.Duration(n)
	if now := time.Now(); !f.TimeoutAfter && now.Add(model+f.Latency).After(deadline) {
		sleepUntil(deadline)
		kind := ""
		switch {
		case start.Add(model).After(deadline):
			// It would have timed out without the fault.
		case f.Stuck > 0:
			kind = FaultStuck
		case f.Latency > 0:
			kind, fs.FaultLatency = FaultLatency, 1
		}
		b.accountFault(waited, time.Since(start), fs)
		if kind == "" {
			return b.timedOut(n, timeout)
		}
		return b.injected(kind, n, timeout)
	}
	if f.Latency > 0 {
		fs.FaultLatency = 1
		time.Sleep(f.Latency)
	}
	err := b.transact(tx, rx, time.Now(), model)
	b.rejected(err)
	if err != nil {
		fs.Rejected = 1
	}
	if f.TimeoutAfter {
		sleepUntil(deadline)
		fs.FaultTimeoutAfter = 1
		b.accountFault(waited, time.Since(start), fs)
		return b.injected(FaultTimeoutAfter, n, timeout)
	}
	if f.FlipMISOBits > 0 && tx[0] == proto.CmdRead {
		if k := flipBits(rx, f.FlipMISOBits, f.FlipSeed); k > 0 {
			fs.FaultFlips, fs.FlippedBits = 1, uint64(k)
		}
	}
	fs.Transfers, fs.Bytes = 1, uint64(n)
	b.accountFault(waited, time.Since(start), fs)
	return nil
}

// injected returns the error of a transfer failed by an injected fault.
func (b *InProcess) injected(kind string, n int, timeout time.Duration) error {
	b.log.Debug("SPI transfer failed by injected fault", zap.String("fault", kind),
		zap.Int("len", n), zap.Duration("timeout", timeout))
	return &FaultError{Kind: kind, Err: fmt.Errorf("spibridge: SPI transfer timed out after %v (injected %s): %w",
		timeout, kind, syscall.ETIMEDOUT)}
}

// unstickAt releases the bus, held by a stuck fault after its transfer
// gave up, at end. Close cancels it (nobody can use the bus then).
func (b *InProcess) unstickAt(end time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unstick = time.AfterFunc(time.Until(end), func() {
		b.lastEnd = time.Now()
		<-b.bus
	})
}

func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

// flipBits inverts n distinct bits of the read data in miso (from
// proto.ReadDataStart), at positions drawn from PCG(seed); it returns how
// many it flipped (n capped at the number of data bits).
func flipBits(miso []byte, n int, seed uint64) int {
	if len(miso) <= proto.ReadDataStart {
		return 0
	}
	data := miso[proto.ReadDataStart:]
	total := 8 * len(data)
	n = min(n, total)
	r := rand.New(rand.NewPCG(seed, 0x5eed_f11b))
	var pos []int
	if 4*n >= total {
		pos = r.Perm(total)[:n]
	} else {
		seen := make(map[int]bool, n)
		for len(pos) < n {
			if p := r.IntN(total); !seen[p] {
				seen[p] = true
				pos = append(pos, p)
			}
		}
	}
	for _, p := range pos {
		data[p/8] ^= 1 << (p % 8)
	}
	return n
}

// accountFault adds one transfer that ran with an injected fault: fs
// holds its per-kind counts and, if it completed, Transfers = 1 and its
// Bytes; one that did not complete counts as a timeout.
func (b *InProcess) accountFault(wait, busy time.Duration, fs BusStats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &b.stats
	s.Wait += wait
	s.MaxWait = max(s.MaxWait, wait)
	s.Busy += busy
	if fs.Transfers == 0 {
		s.Timeouts++
	}
	s.Transfers += fs.Transfers
	s.Bytes += fs.Bytes
	s.Rejected += fs.Rejected
	s.FaultTimeoutBefore += fs.FaultTimeoutBefore
	s.FaultTimeoutAfter += fs.FaultTimeoutAfter
	s.FaultLatency += fs.FaultLatency
	s.FaultStuck += fs.FaultStuck
	s.FaultFlips += fs.FaultFlips
	s.FlippedBits += fs.FlippedBits
}

var _ error = (*FaultError)(nil)
