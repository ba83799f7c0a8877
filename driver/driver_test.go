package driver

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// newNode returns a started chip and a driver for it over an in-process
// bus with the given timing.
func newNode(t *testing.T, timing spibridge.Timing, cfg Config) (*chip.Chip, *spibridge.InProcess, *Driver) {
	t.Helper()
	c := chip.New(chip.Config{})
	c.Start()
	t.Cleanup(c.Close)
	bus := spibridge.NewInProcess(c, timing, nil)
	return c, bus, New(bus, cfg)
}

func TestTransmitAccounting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		_, _, d := newNode(t, spibridge.DefaultTiming(), Config{TxRingSize: 4})
		if err := d.Transmit(make([]byte, 100)); !errors.Is(err, ErrDown) {
			t.Fatalf("transmit while down: %v, want ErrDown", err)
		}
		if err := d.Open(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Transmit(make([]byte, proto.MaxWireLen-proto.FCSLen+1)); !errors.Is(err, ErrFrameTooLong) {
			t.Fatalf("oversized transmit: %v, want ErrFrameTooLong", err)
		}
		if err := d.Transmit(make([]byte, proto.MaxWireLen-proto.FCSLen)); err != nil {
			t.Fatalf("largest frame: %v", err)
		}
		synctest.Wait()
		time.Sleep(10 * time.Millisecond)
		if err := d.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		s := d.Stats()
		want := Stats{TxOffered: 3, TxDropped: 2, TxPackets: 1, TxBytes: proto.MaxWireLen - proto.FCSLen}
		if s != want {
			t.Errorf("stats %+v, want %+v", s, want)
		}
	})
}

// TestStopWake: a full ring refuses with ErrBusy and stops the queue; the
// worker taking a frame wakes it; Stop drops what is still queued.
func TestStopWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c, _, d := newNode(t, spibridge.DefaultTiming(), Config{TxRingSize: 2})
		if err := d.Open(ctx); err != nil {
			t.Fatal(err)
		}
		// The worker takes the first frame at once and spends ~850 us
		// writing it; two more fill the ring.
		for i := range 3 {
			if err := d.Transmit(make([]byte, 1514)); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			for i == 0 && d.txq.Load() != 0 {
				// Until the worker has taken it (it may be finishing a
				// register read of its housekeeping first).
				time.Sleep(10 * time.Microsecond)
			}
		}
		if !d.QueueStopped() {
			t.Error("queue not stopped with a full ring")
		}
		if err := d.Transmit(make([]byte, 60)); !errors.Is(err, ErrBusy) {
			t.Fatalf("transmit on a full ring: %v, want ErrBusy", err)
		}
		select {
		case <-d.Wake():
			t.Fatal("woken before the worker took a frame")
		default:
		}
		<-d.Wake()
		if d.QueueStopped() {
			t.Error("queue still stopped after wake")
		}
		if err := d.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		s := d.Stats()
		if s.TxBusy != 1 || s.TxOffered != 4 || s.TxAccounted() != s.TxOffered || s.TxQueued != 0 {
			t.Errorf("stats %+v", s)
		}
		if s.TxPackets+s.TxDropped != 3 {
			t.Errorf("%d written + %d dropped at stop, want 3", s.TxPackets, s.TxDropped)
		}
		if en := c.Register(regs.TSNSystemControl); en != 0 {
			t.Errorf("TSN_SYSTEM_CONTROL %#x after Stop, want 0", en)
		}
	})
}

// tearingDevice answers register reads of SYSCOUNT from a script of
// (high, low) values, one per read, to make the halves tear.
type tearingDevice struct {
	mu    sync.Mutex
	reads []uint32
	irq   chan struct{}
}

func (d *tearingDevice) Transact(mosi, miso []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(miso)
	binary.BigEndian.PutUint32(miso[4:], d.reads[0])
	d.reads = d.reads[1:]
	return nil
}

func (d *tearingDevice) IRQ() <-chan struct{} { return d.irq }

func TestReadSysCountTearSafe(t *testing.T) {
	// SYSCOUNT passes 0x1_FFFFFFFF -> 0x2_00000000 between the reads of
	// L and the second H: a naive H,L read gives 0x1_00000003 or
	// 0x2_FFFFFFFE-like garbage.
	for _, tc := range []struct {
		name  string
		reads []uint32
		want  uint64
	}{
		{"stable", []uint32{1, 0x1234, 1}, 1<<32 | 0x1234},
		{"low wrapped", []uint32{1, 0xFFFFFFFE, 2, 0x3}, 2<<32 | 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := &tearingDevice{reads: tc.reads, irq: make(chan struct{})}
			d := New(spibridge.NewInProcess(dev, spibridge.Timing{}, nil), Config{})
			got, err := d.ReadSysCount(context.Background())
			if err != nil || got != tc.want {
				t.Errorf("ReadSysCount = %#x, %v; want %#x", got, err, tc.want)
			}
			if len(dev.reads) != 0 {
				t.Errorf("%d scripted reads left over", len(dev.reads))
			}
		})
	}
}

// TestReadSysCountAdvances reads SYSCOUNT from a real chip over the timed
// bus: consecutive reads advance by the time the reads take.
func TestReadSysCountAdvances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c, _, d := newNode(t, spibridge.DefaultTiming(), Config{})
		time.Sleep(time.Second)
		a, err := d.ReadSysCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.Clock().Now(); a > want || want-a > 10_000 {
			t.Errorf("SYSCOUNT %d, chip clock now %d", a, want)
		}
		time.Sleep(time.Millisecond)
		b, err := d.ReadSysCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// 1 ms is 125000 ticks, plus three 8-byte reads of 24.27 us each.
		if diff := b - a; diff < 125_000 || diff > 125_000+3*3100 {
			t.Errorf("SYSCOUNT advanced %d ticks over 1 ms", diff)
		}
	})
}
