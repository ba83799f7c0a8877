package spidev

import (
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func TestParseIRQ(t *testing.T) {
	for _, c := range []struct {
		spec   string
		chip   string
		offset int
	}{{"gpiochip0:25", "gpiochip0", 25}, {"/dev/gpiochip4:0", "/dev/gpiochip4", 0}, {"gpiochip1:65535", "gpiochip1", 65535}} {
		chip, off, err := ParseIRQ(c.spec)
		if err != nil || chip != c.chip || off != c.offset {
			t.Errorf("ParseIRQ(%q) = %q, %d, %v; want %q, %d", c.spec, chip, off, err, c.chip, c.offset)
		}
	}
	for _, spec := range []string{"", "gpiochip0", "gpiochip0:", ":25", "gpiochip0:-1", "gpiochip0:x", "gpiochip0:65536", "gpiochip0:0x19"} {
		if _, _, err := ParseIRQ(spec); err == nil || !strings.HasPrefix(err.Error(), "spibridge: interrupt line") || !strings.Contains(err.Error(), "gpiochip0:25") {
			t.Errorf("ParseIRQ(%q): %v, want an error showing the expected form", spec, err)
		}
	}
}

// fakeLine is a requested GPIO line whose edges the test fires. Like
// gpiocdev's Line, Close waits for a running handler and no handler runs
// afterwards.
type fakeLine struct {
	mu     sync.Mutex
	onEdge func()
	closed int
}

func (l *fakeLine) fire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed == 0 {
		l.onEdge()
	}
}

func (l *fakeLine) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed++
	return nil
}

func fakeRequester(l *fakeLine, gotChip *string, gotOffset *int) gpioRequester {
	return func(chip string, offset int, onEdge func()) (gpioLine, error) {
		*gotChip, *gotOffset = chip, offset
		l.onEdge = onEdge
		return l, nil
	}
}

func pending(c <-chan struct{}) int {
	n := 0
	for {
		select {
		case <-c:
			n++
		default:
			return n
		}
	}
}

// TestGPIOInterruptCoalesces: edges that arrive while one is pending
// coalesce into it but are all counted; Close releases the line once and
// delivers nothing more.
func TestGPIOInterruptCoalesces(t *testing.T) {
	line := &fakeLine{}
	var chip string
	var offset int
	g, err := newGPIOInterrupt(fakeRequester(line, &chip, &offset), "gpiochip0", 25, nil)
	if err != nil {
		t.Fatal(err)
	}
	if chip != "gpiochip0" || offset != 25 {
		t.Errorf("requested %s:%d", chip, offset)
	}
	for range 5 {
		line.fire()
	}
	if n := pending(g.Interrupt()); n != 1 || g.Edges() != 5 {
		t.Errorf("5 edges: %d pending, %d counted; want 1, 5", n, g.Edges())
	}
	line.fire()
	if n := pending(g.Interrupt()); n != 1 || g.Edges() != 6 {
		t.Errorf("after draining, 1 edge: %d pending, %d counted; want 1, 6", n, g.Edges())
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	g.edge() // a late handler call after Close is ignored
	line.fire()
	if n := pending(g.Interrupt()); n != 0 || g.Edges() != 6 || line.closed != 1 {
		t.Errorf("after Close: %d pending, %d counted, line closed %d times; want 0, 6, 1", n, g.Edges(), line.closed)
	}
}

// TestGPIOInterruptConcurrent: edges fired from another goroutine while
// the consumer drains and then closes are race-free and all counted.
func TestGPIOInterruptConcurrent(t *testing.T) {
	line := &fakeLine{}
	var chip string
	var offset int
	g, err := newGPIOInterrupt(fakeRequester(line, &chip, &offset), "gpiochip0", 25, nil)
	if err != nil {
		t.Fatal(err)
	}
	const edges = 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range edges {
			line.fire()
		}
	}()
	got := 0
	for wait := true; wait; {
		select {
		case <-g.Interrupt():
			got++
		case <-done:
			got += pending(g.Interrupt())
			wait = false
		}
	}
	if got < 1 || got > edges || g.Edges() != edges {
		t.Errorf("%d deliveries for %d counted edges", got, g.Edges())
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGPIOInterruptRequestError: a failed request keeps the errno and
// says what to do.
func TestGPIOInterruptRequestError(t *testing.T) {
	for errno, hint := range map[syscall.Errno]string{
		syscall.ENOENT: "gpiodetect", syscall.EACCES: "gpio group", syscall.EBUSY: "gpioinfo", syscall.EINVAL: "gpioinfo",
	} {
		req := func(string, int, func()) (gpioLine, error) {
			return nil, &os.PathError{Op: "open", Path: "/dev/gpiochip9", Err: errno}
		}
		_, err := newGPIOInterrupt(req, "gpiochip9", 3, nil)
		if !errors.Is(err, errno) || !strings.Contains(err.Error(), hint) || !strings.HasPrefix(err.Error(), "spibridge: request GPIO line gpiochip9:3") {
			t.Errorf("%v: %v", errno, err)
		}
	}
}

// TestPollInterrupt: in virtual time, exactly one edge per period, edges
// coalesce while nobody takes them, and none come after Close (whose
// goroutine has exited when the bubble ends).
func TestPollInterrupt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period = time.Millisecond
		p := NewPollInterrupt(period)
		time.Sleep(period / 2) // sample between ticks
		const n = 10
		for i := range n {
			synctest.Wait()
			if got := pending(p.Interrupt()); got != 0 {
				t.Fatalf("period %d: %d edges before the tick", i, got)
			}
			time.Sleep(period)
			synctest.Wait()
			if got := pending(p.Interrupt()); got != 1 {
				t.Fatalf("period %d: %d edges, want 1", i, got)
			}
		}
		if p.Edges() != n {
			t.Errorf("%d edges counted in %d periods", p.Edges(), n)
		}
		time.Sleep(3 * period)
		synctest.Wait()
		if got := pending(p.Interrupt()); got != 1 || p.Edges() != n+3 {
			t.Errorf("3 untaken periods: %d pending, %d counted; want 1, %d", got, p.Edges(), n+3)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * period)
		synctest.Wait()
		if got := pending(p.Interrupt()); got != 0 || p.Edges() != n+3 {
			t.Errorf("after Close: %d pending, %d counted", got, p.Edges())
		}
	})
}

func TestPollInterruptBadPeriod(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "non-positive period") {
			t.Errorf("recovered %v", r)
		}
	}()
	NewPollInterrupt(0)
}
