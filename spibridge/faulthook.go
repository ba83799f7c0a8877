package spibridge

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
)

// SPIFaults decides, for each transfer that owns an InProcess bus (and
// does not find it stuck), which faults to inject into it. The fault package implements it; a nil
// SPIFaults (the default) costs one atomic load per transfer.
type SPIFaults interface {
	// Decide is called once per transfer, while it owns the bus, with the
	// transfer's length and command byte (proto.CmdRead, proto.CmdWrite
	// or anything the host sent). It must not block.
	Decide(n int, cmd byte) SPIFault
}

// SPIFault is what happens to one transfer. The zero value is no fault.
// The effects apply while the transfer owns the bus; its deadline is its
// timeout from then (waiting for the bus is never timed, as on Linux).
// In this order:
//
//   - Stuck: the bus (the controller) is stuck for Stuck from now. Every
//     transfer that owns the bus in that period, this one first, finds it
//     stuck: if the period reaches its deadline it holds the bus until
//     its deadline and fails with ETIMEDOUT (the chip never sees it);
//     otherwise it waits for the period to end and then runs normally.
//     Transfers queued behind wait for the bus untimed and are timed only
//     once they own it, as spi_sync's queue on a controller whose
//     transfers keep timing out.
//   - TimeoutBefore: the bus is held until the deadline, the chip is not
//     called, the transfer fails with ETIMEDOUT.
//   - Latency: extra hold before the chip decodes the transaction (a slow
//     transfer on the controller). If it pushes the transfer past its
//     deadline, the transfer times out by the normal rule.
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
	// FaultFlip is never an error's kind (a flipped read completes); it
	// marks traced transfers (Timeline.Faults).
	FaultFlip = "spi.flip"
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

// faulty runs a transfer that owns the bus since start (after waiting
// waited for it) with the injected fault f, or on a bus found stuck,
// releases the bus and accounts it. With the timing model off the
// faults' own durations still elapse: an injected timeout waits for the
// deadline, latency and stuck sleep.
//
// *kinds is set to the fault kinds that acted on the transfer (see
// faultKinds), for a tracer.
func (b *InProcess) faulty(f SPIFault, tx, rx []byte, waited time.Duration, start time.Time, timeout time.Duration, kinds *string) error {
	defer b.release()
	deadline := start.Add(timeout)
	n := len(tx)
	var fs BusStats
	if f.Stuck > 0 {
		b.stuckUntil = later(b.stuckUntil, start.Add(f.Stuck))
	}
	if !b.stuckUntil.IsZero() {
		fs.FaultStuck = 1
		if !b.stuckUntil.Before(deadline) {
			b.sleepUntil(deadline)
			b.accountFault(waited, time.Since(start), fs, kinds)
			return b.injected(FaultStuck, n, timeout)
		}
		b.sleepUntil(b.stuckUntil)
		b.stuckUntil = time.Time{}
	}
	if f.TimeoutBefore {
		b.sleepUntil(deadline)
		fs.FaultTimeoutBefore = 1
		b.accountFault(waited, time.Since(start), fs, kinds)
		return b.injected(FaultTimeoutBefore, n, timeout)
	}
	model := b.timing.Duration(n)
	if now := time.Now(); !f.TimeoutAfter && now.Add(model+f.Latency).After(deadline) {
		b.sleepUntil(deadline)
		kind := ""
		switch {
		case start.Add(model).After(deadline):
			// It would have timed out without the fault.
		case fs.FaultStuck > 0:
			kind = FaultStuck
		case f.Latency > 0:
			kind, fs.FaultLatency = FaultLatency, 1
		}
		b.accountFault(waited, time.Since(start), fs, kinds)
		if kind == "" {
			return b.timedOut(n, timeout)
		}
		return b.injected(kind, n, timeout)
	}
	if f.Latency > 0 {
		fs.FaultLatency = 1
		b.timing.Timer.Sleep(f.Latency)
	}
	err := b.transact(tx, rx, time.Now(), model)
	b.rejected(err)
	if err != nil {
		fs.Rejected = 1
	}
	if f.TimeoutAfter {
		b.sleepUntil(deadline)
		fs.FaultTimeoutAfter = 1
		b.accountFault(waited, time.Since(start), fs, kinds)
		return b.injected(FaultTimeoutAfter, n, timeout)
	}
	if f.FlipMISOBits > 0 && tx[0] == proto.CmdRead {
		if k := flipBits(rx, f.FlipMISOBits, f.FlipSeed); k > 0 {
			fs.FaultFlips, fs.FlippedBits = 1, uint64(k)
		}
	}
	fs.Transfers, fs.Bytes = 1, uint64(n)
	b.accountFault(waited, time.Since(start), fs, kinds)
	return nil
}

// injected returns the error of a transfer failed by an injected fault.
func (b *InProcess) injected(kind string, n int, timeout time.Duration) error {
	b.log.Debug("SPI transfer failed by injected fault", zap.String("fault", kind),
		zap.Int("len", n), zap.Duration("timeout", timeout))
	return &FaultError{Kind: kind, Err: fmt.Errorf("spibridge: SPI transfer timed out after %v (injected %s): %w",
		timeout, kind, syscall.ETIMEDOUT)}
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

// faultKinds names the fault kinds one transfer's counts fs hold, in
// the order they act, joined by "+" (e.g. "spi.latency+spi.flip").
func (fs *BusStats) faultKinds() string {
	var k []string
	for _, c := range []struct {
		n    uint64
		kind string
	}{
		{fs.FaultStuck, FaultStuck}, {fs.FaultTimeoutBefore, FaultTimeoutBefore}, {fs.FaultLatency, FaultLatency},
		{fs.FaultTimeoutAfter, FaultTimeoutAfter}, {fs.FaultFlips, FaultFlip},
	} {
		if c.n > 0 {
			k = append(k, c.kind)
		}
	}
	return strings.Join(k, "+")
}

// accountFault adds one transfer that ran with an injected fault: fs
// holds its per-kind counts and, if it completed, Transfers = 1 and its
// Bytes; one that did not complete counts as a timeout.
func (b *InProcess) accountFault(wait, busy time.Duration, fs BusStats, kinds *string) {
	*kinds = fs.faultKinds()
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
