package driver

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// xferKind classifies a transaction by its header.
type xferKind int

const (
	kindOther xferKind = iota
	kindTxWrite
	kindRegRead
	kindRegWrite
	kindMetaRead
	kindFrameRead
	numKinds
)

func kindOf(tx []byte) xferKind {
	if len(tx) < proto.HeaderLen {
		return kindOther
	}
	addr := binary.BigEndian.Uint16(tx[1:])
	switch {
	case tx[0] == proto.CmdWrite && addr == proto.AddrTxFrame:
		return kindTxWrite
	case tx[0] == proto.CmdWrite && addr&proto.AddrSpace == proto.AddrRegWrite:
		return kindRegWrite
	case tx[0] == proto.CmdRead && addr&proto.AddrSpace == proto.AddrRegRead:
		return kindRegRead
	case tx[0] == proto.CmdRead && addr == proto.AddrRxMeta:
		return kindMetaRead
	case tx[0] == proto.CmdRead && addr == proto.AddrRxFrame:
		return kindFrameRead
	}
	return kindOther
}

// fault is what the faulty transport does with one transfer.
type fault int

const (
	pass       fault = iota
	failBefore       // ETIMEDOUT, the chip never sees it
	failAfter        // the chip acts on it, then ETIMEDOUT (MISO zeroed)
	duplicate        // the chip sees it twice, then ETIMEDOUT
	stuck            // blocks until the context ends, the chip never sees it
	stuckAfter       // the chip acts on it, then blocks until the context ends
	hang             // blocks until release() whatever the context says
)

// faulty wraps a transport and injects faults decided by rule, which sees
// the transfer's kind and its 1-based index among transfers of that kind.
// Its interrupt line is the inner one unless lineless is set: then only
// edges the test raises reach the driver (every real edge is lost).
type faulty struct {
	inner    spibridge.Transport
	lineless bool
	irq      chan struct{}
	released chan struct{}

	mu     sync.Mutex
	rule   func(k xferKind, i int) fault
	flip   func(k xferKind, i int) bool // corrupt MISO of a transfer that passed
	rng    *rand.Rand                   // where flips land (nil: bit 0 of the last byte)
	seen   [numKinds]int                // transfers started, per kind
	failed [numKinds]int                // transfers that returned an error
	once   sync.Once
}

func newFaulty(inner spibridge.Transport) *faulty {
	return &faulty{inner: inner, irq: make(chan struct{}, 1), released: make(chan struct{})}
}

func (f *faulty) setRule(r func(k xferKind, i int) fault) {
	f.mu.Lock()
	f.rule = r
	f.mu.Unlock()
}

func (f *faulty) setFlip(r func(k xferKind, i int) bool) {
	f.mu.Lock()
	f.flip = r
	f.mu.Unlock()
}

// release unblocks transfers in hang, now and later.
func (f *faulty) release() { f.once.Do(func() { close(f.released) }) }

func (f *faulty) count(k xferKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[k]
}

func (f *faulty) failures(k xferKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed[k]
}

var errInjected = fmt.Errorf("faulty: injected SPI timeout: %w", syscall.ETIMEDOUT)

func (f *faulty) Transfer(ctx context.Context, tx, rx []byte) error {
	k := kindOf(tx)
	f.mu.Lock()
	f.seen[k]++
	act, flip := pass, false
	if f.rule != nil {
		act = f.rule(k, f.seen[k])
	}
	if f.flip != nil {
		flip = f.flip(k, f.seen[k])
	}
	f.mu.Unlock()
	err := f.do(ctx, act, tx, rx)
	if err == nil && flip {
		f.mu.Lock()
		i, bit := len(rx)-1, 0 // the last data byte: a register's bit 0
		if f.rng != nil {
			i, bit = f.rng.IntN(len(rx)), f.rng.IntN(8)
		}
		f.mu.Unlock()
		rx[i] ^= 1 << bit
	}
	if err != nil {
		f.mu.Lock()
		f.failed[k]++
		f.mu.Unlock()
	}
	return err
}

func (f *faulty) do(ctx context.Context, act fault, tx, rx []byte) error {
	switch act {
	case failBefore:
		return errInjected
	case failAfter, duplicate, stuckAfter:
		if err := f.inner.Transfer(ctx, tx, rx); err != nil {
			return err
		}
		if act == duplicate {
			if err := f.inner.Transfer(ctx, tx, rx); err != nil {
				return err
			}
		}
		clear(rx)
		if act != stuckAfter {
			return errInjected
		}
		fallthrough
	case stuck:
		<-ctx.Done()
		return fmt.Errorf("faulty: stuck bus: %w", ctx.Err())
	case hang:
		<-f.released
		return errInjected
	}
	return f.inner.Transfer(ctx, tx, rx)
}

func (f *faulty) Interrupt() <-chan struct{} {
	if f.lineless {
		return f.irq
	}
	return f.inner.Interrupt()
}

// raise sends a (spurious) edge on the test-owned line.
func (f *faulty) raise() {
	select {
	case f.irq <- struct{}{}:
	default:
	}
}

func (f *faulty) Close() error { return f.inner.Close() }

var _ spibridge.Transport = (*faulty)(nil)

// everyNth returns a rule that applies act to every nth transfer of kind k.
func everyNth(k xferKind, n int, act fault) func(xferKind, int) fault {
	return func(kk xferKind, i int) fault {
		if kk == k && i%n == 0 {
			return act
		}
		return pass
	}
}

// onlyAt returns a rule that applies act to transfer number i of kind k.
func onlyAt(k xferKind, i int, act fault) func(xferKind, int) fault {
	return func(kk xferKind, ii int) fault {
		if kk == k && ii == i {
			return act
		}
		return pass
	}
}

// rig is a started chip, a timed in-process bus, a faulty wrapper and a
// driver whose received frames are recorded.
type rig struct {
	chip *chip.Chip
	bus  *spibridge.InProcess
	f    *faulty
	d    *Driver

	mu   sync.Mutex
	rcvd [][]byte
	at   []time.Time
}

func newRig(t *testing.T, cfg Config, lineless bool) *rig {
	t.Helper()
	return newWrappedRig(t, cfg, lineless, nil)
}

// newWrappedRig is newRig with the driver's transport wrap(faulty).
func newWrappedRig(t *testing.T, cfg Config, lineless bool, wrap func(*faulty) spibridge.Transport) *rig {
	t.Helper()
	r := &rig{chip: chip.New(chip.Config{})}
	r.chip.Start()
	t.Cleanup(r.chip.Close)
	r.bus = spibridge.NewInProcess(r.chip, spibridge.DefaultTiming(), nil)
	t.Cleanup(func() { r.bus.Close() })
	r.f = newFaulty(r.bus)
	r.f.lineless = lineless
	cfg.Receive = func(fr []byte) bool {
		r.mu.Lock()
		r.rcvd = append(r.rcvd, fr)
		r.at = append(r.at, time.Now())
		r.mu.Unlock()
		return true
	}
	var tr spibridge.Transport = r.f
	if wrap != nil {
		tr = wrap(r.f)
	}
	r.d = New(tr, cfg)
	return r
}

func (r *rig) open(t *testing.T) {
	t.Helper()
	if err := r.d.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		r.f.release()
		if err := r.d.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	// Let the worker's first drain (one empty metadata read) finish: a
	// transfer on the timed bus takes emulated time.
	time.Sleep(time.Millisecond)
}

func (r *rig) received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.rcvd...)
}

// testFrame is frame seq of a test stream: broadcast, EtherType 0x88B5,
// the sequence number, padding to size bytes.
func testFrame(seq uint32, size int) []byte {
	f := make([]byte, size)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x09, 0x88, 0xb5})
	binary.BigEndian.PutUint32(f[14:], seq)
	for i := 18; i < size; i++ {
		f[i] = byte(seq) + byte(i)
	}
	return f
}

func seqOf(f []byte) uint32 { return binary.BigEndian.Uint32(f[14:]) }

// inject puts frame seq on the chip's PHY, as if it had arrived now.
func (r *rig) inject(seq uint32, size int) {
	r.chip.ReceivePHY(proto.AppendFCS(testFrame(seq, size)), time.Now())
}

// checkTx asserts the TX invariant of the driver's counters.
func checkTx(t *testing.T, s Stats) {
	t.Helper()
	if s.TxAccounted() != s.TxOffered {
		t.Errorf("TX: %d offered != %d accounted: %+v", s.TxOffered, s.TxAccounted(), s)
	}
}

// chipTaken is every TX write the chip took or refused for space.
func (r *rig) chipTaken() uint64 {
	return r.chip.Register(regs.FSTotalRxFrameCnt) + r.chip.Register(regs.FSTotalBackPressureEventCnt)
}

// checkRxSettled asserts, once the driver is idle, that the chip's RX
// FIFOs are empty and every frame the chip accepted is in exactly one of
// the driver's RX counters, and that the frames delivered are distinct,
// intact frames of the stream.
func (r *rig) checkRxSettled(t *testing.T) Stats {
	t.Helper()
	s := r.d.Stats()
	cs := r.chip.Stats()
	if cs.RxMetaFIFO.Len != 0 || cs.RxFrameFIFO.Len != 0 {
		t.Errorf("chip RX FIFOs not empty: %d entries, %d frames", cs.RxMetaFIFO.Len, cs.RxFrameFIFO.Len)
	}
	accepted := r.chip.Register(regs.FDTotalRxFrameCnt) - r.chip.Register(regs.FDTotalDropFrameCnt)
	if got := s.RxAccounted(); got != accepted {
		t.Errorf("RX: chip accepted %d frames, driver accounted %d: %+v", accepted, got, s)
	}
	if sum := s.RxLengthErrors + s.RxCRCErrors + s.RxFIFOErrors + s.RxOrphans; sum != s.RxErrors {
		t.Errorf("RX error kinds sum to %d, RxErrors %d", sum, s.RxErrors)
	}
	seen := map[uint32]bool{}
	for _, f := range r.received() {
		seq := seqOf(f)
		if seen[seq] {
			t.Errorf("frame %d delivered twice", seq)
		}
		seen[seq] = true
		if want := testFrame(seq, len(f)); string(f) != string(want) {
			t.Errorf("frame %d delivered corrupted", seq)
		}
	}
	if uint64(len(seen)) != s.RxPackets {
		t.Errorf("%d distinct frames delivered, RxPackets %d", len(seen), s.RxPackets)
	}
	return s
}

func appendFCS(f []byte) []byte { return proto.AppendFCS(f) }
