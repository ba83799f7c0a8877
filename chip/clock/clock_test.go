package clock

import (
	"testing"
	"testing/synctest"
	"time"
)

// epoch is an arbitrary fixed instant; the clock only looks at differences.
var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestDefaultPeriod(t *testing.T) {
	// chip.md section 5: SYSCOUNT runs at 125 MHz, 8 ns per tick.
	if DefaultPeriod != time.Second/125_000_000 {
		t.Fatalf("DefaultPeriod = %v, want 8ns (125 MHz)", DefaultPeriod)
	}
	for _, p := range []time.Duration{0, -1} {
		if got := New(epoch, p, 0).Period(); got != DefaultPeriod {
			t.Errorf("New(period %v).Period() = %v, want %v", p, got, DefaultPeriod)
		}
	}
	if got := New(epoch, 10*time.Nanosecond, 0).Period(); got != 10*time.Nanosecond {
		t.Errorf("Period() = %v, want 10ns", got)
	}
}

func TestAt(t *testing.T) {
	c := New(epoch, 0, 0)
	for _, tc := range []struct {
		d    time.Duration // since epoch
		want uint64
	}{
		{-time.Hour, 0},
		{-time.Nanosecond, 0},
		{0, 0},
		{7 * time.Nanosecond, 0},
		{8 * time.Nanosecond, 1},
		{15 * time.Nanosecond, 1},
		{16 * time.Nanosecond, 2},
		{80 * time.Nanosecond, 10}, // one byte at 100 Mbit/s is 10 ticks
		{time.Second, 125_000_000},
		{4294967296 * time.Nanosecond, 1 << 29}, // 2^29 ticks = 4.29 s
		{time.Hour, 3600 * 125_000_000},
	} {
		if got := c.At(epoch.Add(tc.d)); got != tc.want {
			t.Errorf("At(epoch+%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestTimeOf(t *testing.T) {
	c := New(epoch, 0, 0)
	for _, tick := range []uint64{0, 1, 2, 10, 107, 125_000_000, 1<<29 - 1, 1 << 29, 1<<40 + 3} {
		at := c.TimeOf(tick)
		if want := epoch.Add(time.Duration(tick) * 8 * time.Nanosecond); !at.Equal(want) {
			t.Errorf("TimeOf(%d) = %v, want %v", tick, at, want)
		}
		if got := c.At(at); got != tick {
			t.Errorf("At(TimeOf(%d)) = %d", tick, got)
		}
		if tick > 0 {
			if got := c.At(at.Add(-time.Nanosecond)); got != tick-1 {
				t.Errorf("At(TimeOf(%d) - 1ns) = %d, want %d", tick, got, tick-1)
			}
		}
	}
}

func TestNowInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(time.Now(), 0, 0)
		if got := c.Now(); got != 0 {
			t.Fatalf("Now() at epoch = %d, want 0", got)
		}
		time.Sleep(1538 * 80 * time.Nanosecond) // a 1518-byte frame with preamble and IFG
		if got, want := c.Now(), uint64(1538*10); got != want {
			t.Fatalf("Now() after %v = %d, want %d", 1538*80*time.Nanosecond, got, want)
		}
		time.Sleep(time.Second)
		if got, want := c.Now(), uint64(1538*10+125_000_000); got != want {
			t.Fatalf("Now() after another second = %d, want %d", got, want)
		}
	})
}

func TestLow29(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want uint32
	}{
		{0, 0},
		{5, 5},
		{1<<29 - 1, 0x1FFFFFFF},
		{1 << 29, 0},
		{1<<29 + 5, 5},
		{0xFFFF_FFFF_FFFF_FFFF, 0x1FFFFFFF},
		{0x1234_5678_9ABC_DEF0, 0x1ABCDEF0},
	} {
		if got := Low29(tc.in); got != tc.want {
			t.Errorf("Low29(%#x) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
	if TickMask != 0x1FFFFFFF || TickBits != 29 {
		t.Errorf("TickMask %#x TickBits %d, want 0x1FFFFFFF and 29", TickMask, TickBits)
	}
}

func TestDrift(t *testing.T) {
	for _, tc := range []struct {
		ppm  float64
		d    time.Duration
		want uint64
	}{
		// +100 ppm: one second of host time is 1.0001 s of chip time.
		{100, time.Second, 125_012_500},
		{-100, time.Second, 124_987_500},
		{50, 10 * time.Second, 1_250_062_500},
		{-20, 10 * time.Second, 1_249_975_000},
		{100, 0, 0},
		{100, -time.Second, 0},
	} {
		c := New(epoch, 0, tc.ppm)
		if got := c.At(epoch.Add(tc.d)); got != tc.want {
			t.Errorf("drift %v ppm: At(epoch+%v) = %d, want %d", tc.ppm, tc.d, got, tc.want)
		}
	}
}

// TestTimeOfDrift checks TimeOf's contract with drift: the earliest time
// at which SYSCOUNT reads at least tick.
func TestTimeOfDrift(t *testing.T) {
	for _, ppm := range []float64{100, -100, 37.5, -0.25, 1000} {
		c := New(epoch, 0, ppm)
		for _, tick := range []uint64{1, 2, 3, 10, 125, 999_999, 125_000_000, 1<<29 - 1, 1 << 29, 987_654_321_001} {
			at := c.TimeOf(tick)
			if got := c.At(at); got < tick {
				t.Errorf("drift %v: At(TimeOf(%d)) = %d, want >= %d", ppm, tick, got, tick)
			}
			if got := c.At(at.Add(-time.Nanosecond)); got >= tick {
				t.Errorf("drift %v: At(TimeOf(%d) - 1ns) = %d, want < %d (TimeOf not the earliest time)", ppm, tick, got, tick)
			}
		}
	}
}

func TestWindow(t *testing.T) {
	const top = 0x1FFFFFFF
	for _, tc := range []struct {
		name          string
		now, from, to uint32
		want          WindowState
	}{
		{"inside", 1500, 1000, 2000, Inside},
		{"at from", 1000, 1000, 2000, Inside},
		{"at to", 2000, 1000, 2000, Inside},
		{"single-tick window", 1000, 1000, 1000, Inside},
		{"one before from", 999, 1000, 2000, Early},
		{"early by much", 10, 100_000, 200_000, Early},
		{"one after to", 2001, 1000, 2000, Passed},
		{"passed by much", 300_000, 100_000, 200_000, Passed},
		{"timed mode: from = now + 5000", 10_000, 15_000, 30_000, Early},
		// Windows across the 2^29 wrap.
		{"wrap: inside before wrap", 0x1FFFFF80, 0x1FFFFF00, 0x100, Inside},
		{"wrap: inside at top", top, 0x1FFFFF00, 0x100, Inside},
		{"wrap: inside at 0", 0, 0x1FFFFF00, 0x100, Inside},
		{"wrap: inside after wrap", 0x50, 0x1FFFFF00, 0x100, Inside},
		{"wrap: at to", 0x100, 0x1FFFFF00, 0x100, Inside},
		{"wrap: early", 0x1FFFFE00, 0x1FFFFF00, 0x100, Early},
		{"wrap: passed", 0x101, 0x1FFFFF00, 0x100, Passed},
		{"wrap: now before wrap, window after", 0x1FFFFF00, 0x100, 0x200, Early},
		{"wrap: now after wrap, window before", 0x100, 0x1FFFFE00, 0x1FFFFF00, Passed},
		// Outside the window, the nearer reading wins: a tick more than
		// half the span past to counts as early for the next lap.
		{"half a lap after to: passed", 2000 + 1<<28 - 600, 1000, 2000, Passed},
		{"more than half a lap after to: early", 2000 + 1<<28 + 10, 1000, 2000, Early},
		// Bits above 29 are ignored.
		{"high bits ignored", 1500 | 0xE000_0000, 1000 | 0x2000_0000, 2000 | 0x4000_0000, Inside},
	} {
		if got := Window(tc.now, tc.from, tc.to); got != tc.want {
			t.Errorf("%s: Window(now %#x, from %#x, to %#x) = %v, want %v", tc.name, tc.now, tc.from, tc.to, got, tc.want)
		}
	}
}

// TestWindowSimpleMode: the driver's simple-mode window [0, 0x1FFFFFFF]
// covers the whole 29-bit span, so every tick is Inside.
func TestWindowSimpleMode(t *testing.T) {
	for _, now := range []uint32{0, 1, 2, 1000, 0x0FFFFFFF, 0x10000000, 0x1FFFFFFE, 0x1FFFFFFF} {
		if got := Window(now, 0, 0x1FFFFFFF); got != Inside {
			t.Errorf("Window(%#x, 0, 0x1FFFFFFF) = %v, want Inside", now, got)
		}
	}
	for now := uint32(0); now < 1<<29; now += 1<<29/4096 + 1 {
		if got := Window(now, 0, 0x1FFFFFFF); got != Inside {
			t.Fatalf("Window(%#x, 0, 0x1FFFFFFF) = %v, want Inside", now, got)
		}
	}
}

func TestTicksUntil(t *testing.T) {
	for _, tc := range []struct {
		now, target, want uint32
	}{
		{0, 0, 0},
		{100, 5100, 5000},
		{0x1FFFFF00, 0x100, 0x200},
		{0x1FFFFFFF, 0, 1},
		{1, 0, 0x1FFFFFFF},
	} {
		if got := TicksUntil(tc.now, tc.target); got != tc.want {
			t.Errorf("TicksUntil(%#x, %#x) = %#x, want %#x", tc.now, tc.target, got, tc.want)
		}
	}
}
