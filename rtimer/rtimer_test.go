package rtimer

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func start(t *testing.T) *Service {
	t.Helper()
	s, err := Start()
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// A nil Service is the time package: exact in virtual time.
func TestNilServiceIsVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s *Service
		t0 := time.Now()
		s.Sleep(27500 * time.Nanosecond)
		if got := time.Since(t0); got != 27500*time.Nanosecond {
			t.Fatalf("Sleep(27.5µs) took %v of virtual time", got)
		}
		s.SleepUntil(t0.Add(100 * time.Microsecond))
		if got := time.Since(t0); got != 100*time.Microsecond {
			t.Fatalf("SleepUntil: at %v, want 100µs", got)
		}
		tm := s.NewTimer(time.Millisecond)
		if !tm.Reset(3 * time.Microsecond) {
			t.Fatal("Reset of a pending timer reported it was not pending")
		}
		at := <-tm.C
		if got := at.Sub(t0); got != 103*time.Microsecond {
			t.Fatalf("timer fired at %v, want 103µs", got)
		}
		if tm.Stop() {
			t.Fatal("Stop of a fired timer reported it pending")
		}
		if s.Stats() != (Stats{}) || s.Close() != nil {
			t.Fatal("nil service has stats or fails to close")
		}
	})
}

// Sleeps never end early, and short ones do not take Go's millisecond:
// what holds on a busy machine is "never early" and "eventually"; the
// precision itself is measured by BenchmarkSleep.
func TestSleepNeverEarly(t *testing.T) {
	s := start(t)
	for _, d := range []time.Duration{time.Nanosecond, 10 * time.Microsecond, 27500 * time.Nanosecond, 300 * time.Microsecond, 2 * time.Millisecond} {
		t0 := time.Now()
		s.Sleep(d)
		if got := time.Since(t0); got < d {
			t.Errorf("Sleep(%v) returned after %v", d, got)
		}
	}
	s.Sleep(0)
	s.Sleep(-time.Second)
	if st := s.Stats(); st.Fired == 0 || st.Fallbacks != 0 || st.ArmErrors != 0 {
		t.Errorf("stats %+v: want timers fired by the timerfd, no fallbacks", st)
	}
}

// Timers fire in deadline order whatever the order they were set in,
// each once, none before its deadline. (Deadlines are taken when each
// timer is set: on a busy machine the loop setting them can be
// preempted for longer than the delays differ.)
func TestTimersFireInOrder(t *testing.T) {
	s := start(t)
	delays := []time.Duration{900, 100, 500, 300, 700, 200, 800, 400, 600}
	var mu sync.Mutex
	fired := map[time.Time]time.Time{} // deadline -> when it fired
	var wg sync.WaitGroup
	for _, d := range delays {
		d := d * time.Microsecond
		set := time.Now()
		tm := s.NewTimer(d)
		deadline := set.Add(d)
		wg.Go(func() {
			at := <-tm.C
			if at.Before(deadline) {
				t.Errorf("timer of %v fired %v before its deadline", d, deadline.Sub(at))
			}
			mu.Lock()
			fired[deadline] = at
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(fired) != len(delays) {
		t.Fatalf("%d of %d timers fired", len(fired), len(delays))
	}
	sorted := slices.SortedFunc(maps.Keys(fired), time.Time.Compare)
	for i := 1; i < len(sorted); i++ {
		if fired[sorted[i]].Before(fired[sorted[i-1]]) {
			t.Errorf("the timer due at %v fired at %v, before the one due %v earlier (%v)",
				sorted[i].Format("15:04:05.000000"), fired[sorted[i]].Format("15:04:05.000000"),
				sorted[i].Sub(sorted[i-1]), fired[sorted[i-1]].Format("15:04:05.000000"))
		}
	}
}

func TestStopAndReset(t *testing.T) {
	s := start(t)
	tm := s.NewTimer(time.Hour)
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer reported not pending")
	}
	if tm.Stop() {
		t.Fatal("second Stop reported pending")
	}
	tm.Reset(20 * time.Microsecond)
	<-tm.C
	// A fired timer, reset before anyone read it: no stale value.
	tm.Reset(0)
	time.Sleep(time.Millisecond)
	tm.Reset(time.Hour)
	select {
	case <-tm.C:
		t.Fatal("stale value in C after Reset")
	default:
	}
	// Resetting the earliest timer later re-arms for the next one.
	a, b := s.NewTimer(50*time.Microsecond), s.NewTimer(100*time.Microsecond)
	a.Reset(time.Hour)
	<-b.C
	a.Stop()
	tm.Stop()
}

// Close fires what is pending (nobody waits forever) and later timers
// use the time package.
func TestCloseFiresPendingAndFallsBack(t *testing.T) {
	s, err := Start()
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	tm := s.NewTimer(time.Hour)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tm.C:
	case <-time.After(10 * time.Second):
		t.Fatal("pending timer did not fire at Close")
	}
	t0 := time.Now()
	s.Sleep(100 * time.Microsecond)
	if time.Since(t0) < 100*time.Microsecond {
		t.Fatal("Sleep after Close returned early")
	}
	tm.Reset(time.Hour)
	if !tm.Stop() {
		t.Fatal("Stop of a fallback timer reported not pending")
	}
	if st := s.Stats(); st.Fallbacks != 2 {
		t.Fatalf("fallbacks %d, want 2 (the Sleep and the Reset)", st.Fallbacks)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Many goroutines sleeping at once (the buses, transmitters and cable
// directions of a run) all wake.
func TestConcurrentSleepers(t *testing.T) {
	s := start(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 50 {
				s.Sleep(time.Duration(1+(i*j)%40) * time.Microsecond)
			}
		})
	}
	wg.Wait()
}

// With SetSpin, sleeps and timers still never end early; the tail of
// each wait is polled (Stats.Polled grows), waits shorter than the spin
// are polled outright, and a timer stopped or reset while fire polls for
// it does not deliver its stale deadline.
func TestSpin(t *testing.T) {
	s := start(t)
	s.SetSpin(50 * time.Microsecond)
	for _, d := range []time.Duration{10 * time.Microsecond, 30 * time.Microsecond, 200 * time.Microsecond} {
		for range 20 {
			t0 := time.Now()
			s.Sleep(d)
			if got := time.Since(t0); got < d {
				t.Fatalf("Sleep(%v) returned after %v", d, got)
			}
		}
	}
	for range 20 {
		t0 := time.Now()
		tm := s.NewTimer(120 * time.Microsecond)
		if at := <-tm.C; at.Sub(t0) < 120*time.Microsecond {
			t.Fatalf("timer fired after %v", at.Sub(t0))
		}
	}
	st := s.Stats()
	if st.Polled <= 0 || st.Fired != 80 {
		t.Errorf("stats %+v: want 80 fired and time polled", st)
	}
	// A timer Reset far out while due within the spin must not fire.
	for range 50 {
		tm := s.NewTimer(40 * time.Microsecond)
		time.Sleep(0) // let fire take it, sometimes
		tm.Reset(time.Hour)
		select {
		case <-tm.C:
			t.Fatal("a timer reset to an hour fired")
		case <-time.After(200 * time.Microsecond):
		}
		tm.Stop()
	}
	s.SetSpin(0)
	t0 := time.Now()
	s.Sleep(30 * time.Microsecond)
	if got := time.Since(t0); got < 30*time.Microsecond {
		t.Fatalf("Sleep without spin returned after %v", got)
	}
}

// TestIdleSpin: a Sleep that starts with no other Sleep in progress and
// none ended within idleAfter polls for the SetIdleSpin time (if longer
// than SetSpin); one that starts while another sleeps, or within
// idleAfter of one's end, polls for the SetSpin time. The decision is
// checked at given instants (spinFor), so a busy machine cannot move it;
// an idle Sleep still never ends early.
func TestIdleSpin(t *testing.T) {
	s := start(t)
	s.SetSpin(30 * time.Microsecond)
	s.SetIdleSpin(80 * time.Microsecond)
	at := func(ns time.Duration) time.Time { return s.epoch.Add(ns) }
	if got := s.spinFor(at(time.Second)); got != 80*time.Microsecond {
		t.Errorf("first Sleep: spin %v, want 80µs", got)
	}
	if got := s.spinFor(at(time.Second)); got != 30*time.Microsecond {
		t.Errorf("Sleep while another sleeps: spin %v, want 30µs", got)
	}
	s.slept()
	s.slept()
	if n := s.sleeping.Load(); n != 0 {
		t.Fatalf("%d Sleeps counted in progress, want 0", n)
	}
	const last = 2 * time.Second
	s.lastSleep.Store(int64(last))
	for _, c := range []struct {
		after time.Duration
		want  time.Duration
	}{{idleAfter / 2, 30 * time.Microsecond}, {idleAfter, 30 * time.Microsecond}, {2 * idleAfter, 80 * time.Microsecond}} {
		if got := s.spinFor(at(last + c.after)); got != c.want {
			t.Errorf("Sleep %v after the last ended: spin %v, want %v", c.after, got, c.want)
		}
		s.sleeping.Add(-1)
	}
	s.SetIdleSpin(10 * time.Microsecond) // shorter than SetSpin: SetSpin's
	if got := s.spinFor(at(last + 2*idleAfter)); got != 30*time.Microsecond {
		t.Errorf("idle spin under the spin: %v, want 30µs", got)
	}
	s.sleeping.Add(-1)
	s.SetIdleSpin(80 * time.Microsecond)
	for _, d := range []time.Duration{50 * time.Microsecond, 200 * time.Microsecond} {
		time.Sleep(2 * idleAfter)
		t0 := time.Now()
		s.Sleep(d)
		if got := time.Since(t0); got < d {
			t.Fatalf("idle Sleep(%v) returned after %v", d, got)
		}
	}
	if n := s.sleeping.Load(); n != 0 {
		t.Errorf("%d Sleeps counted in progress after all ended", n)
	}
}
