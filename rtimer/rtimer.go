// Package rtimer is the precise timer service of real-time runs: sleeps
// and timers honoured to tens of microseconds, without spinning a core.
//
// Go's own timers on Linux do not fire before about a millisecond: the
// runtime waits for them in epoll_wait, whose timeout has millisecond
// resolution, so time.Sleep(10µs) takes about 1.05 ms. The SPI bus, the
// chip's transmitter and the cable wait for tens of microseconds at a
// time, so in a real-time run every modelled wait became a millisecond.
//
// A Service keeps its pending timers in a heap and arms one Linux timerfd
// for the earliest. The timerfd is non-blocking and read through the Go
// netpoller (os.NewFile), so one goroutine parks on it like on a socket:
// when the timerfd expires, epoll reports it readable at once (readiness
// is not rounded to milliseconds), the goroutine fires the due timers and
// re-arms the timerfd for the next. A waiting Service uses no CPU: with
// no timer pending the timerfd is disarmed. timerfd expirations are not
// subject to the thread's timer slack (50 µs by default), unlike
// nanosleep and clock_nanosleep; see the package benchmarks and README's
// "Real time versus virtual time" for the figures.
//
// A Service can end each wait by polling the clock (SetSpin): the
// timerfd is armed that much early and the rest is spent in a loop that
// yields the processor (runtime.Gosched) until the deadline. Wake-ups
// from epoll come 15-40 us late on the project's machines, more when the
// machine is busy; the poll makes a wait exact to a few microseconds at
// the cost of up to that much CPU per wait. It is what the Raspberry
// Pi's own SPI controller driver does: spi-bcm2835 polls transfers
// shorter than its polling_limit_us (30 us by default) instead of
// sleeping for their interrupt. A Sleep that starts from idle (no Sleep
// for a millisecond) can poll longer (SetIdleSpin): a goroutine woken on
// a CPU that was idle wakes later still.
//
// Virtual time is untouched: a nil *Service is valid and uses the time
// package (time.Sleep, time.NewTimer), so code that takes an optional
// *Service runs unchanged under testing/synctest. Only real-time runs
// opt in (the CLI starts a Service; tests never do).
package rtimer

import (
	"container/heap"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnsupported is returned by Start where there is no timerfd.
var ErrUnsupported = errors.New("rtimer: precise timers need Linux timerfd (not available on this system)")

// Service is a precise timer service. The zero value is not usable: get
// one from Start. A nil *Service is usable and means the time package.
type Service struct {
	fd   timerfd
	done chan struct{} // closed when the service goroutine has returned

	spin     atomic.Int64 // SetSpin, ns
	idleSpin atomic.Int64 // SetIdleSpin, ns
	// sleeping counts the Sleeps in progress; lastSleep is when the last
	// one ended, ns since epoch (0: none yet): a Sleep that starts with
	// neither for idleAfter starts from idle (SetIdleSpin).
	sleeping  atomic.Int32
	lastSleep atomic.Int64
	epoch     time.Time

	mu      sync.Mutex
	pending timerHeap
	armed   time.Time // when the timerfd expires; zero: disarmed
	closed  bool
	stats   Stats
	idle    []timerfd // private timerfds for Sleep, not in use
}

// maxIdle bounds the private timerfds kept for Sleep: about one per
// goroutine that sleeps at the same time (buses, transmitters, cable).
const maxIdle = 16

// Stats is the accounting of a Service.
type Stats struct {
	// Fired counts timers and sleeps the timerfds ended; Late is the sum
	// of how late they were found (after the deadline: by the sleeper
	// itself for Sleep, by the service goroutine for a Timer, whose
	// receiver resumes a few microseconds later), MaxLate the largest.
	Fired   uint64
	Late    time.Duration
	MaxLate time.Duration
	// Fallbacks counts timers the time package fired instead: set after
	// Close, or when arming the timerfd failed.
	Fallbacks uint64
	// ArmErrors counts failed timerfd calls (timerfd_create,
	// timerfd_settime, close); the timers affected fired through Go
	// timers or the service's own timerfd.
	ArmErrors uint64
	// Polled is the time spent polling the clock at the end of waits
	// (SetSpin): CPU used, yielding, for precision.
	Polled time.Duration
}

// Start starts a Service: one timerfd and one goroutine parked on it.
// Close stops it. On systems without timerfd it returns ErrUnsupported.
func Start() (*Service, error) {
	fd, err := openTimerfd()
	if err != nil {
		return nil, err
	}
	s := &Service{fd: fd, done: make(chan struct{}), epoch: time.Now()}
	go s.run()
	return s, nil
}

// DefaultSpin is the poll at the end of each wait that real-time runs
// use (tsnsim run --timer-spin): spi-bcm2835's default polling_limit_us.
const DefaultSpin = 30 * time.Microsecond

// SetSpin makes every wait end by polling the clock for up to d (0, the
// default, turns it off): a timerfd is armed d before the deadline and
// the rest is polled, so a wait ends within a few microseconds of its
// deadline unless the timerfd itself woke more than d late. Waits
// shorter than d are polled outright. No-op on a nil Service.
func (s *Service) SetSpin(d time.Duration) {
	if s != nil {
		s.spin.Store(int64(max(d, 0)))
	}
}

// DefaultIdleSpin is the poll at the end of a wait that starts from idle
// in real-time runs (tsnsim run --timer-spin-idle): enough for the
// wake-up of a CPU that was idle on the project's VM (30-60 µs late at
// p50 to p99 when nothing else ran for a while).
const DefaultIdleSpin = 80 * time.Microsecond

// idleAfter is how long the service must have had no Sleep in progress
// for the next one to start from idle.
const idleAfter = time.Millisecond

// SetIdleSpin makes a Sleep that starts from idle (no Sleep in progress
// or ended within the last millisecond) poll the clock for up to d
// instead of the SetSpin time, if d is longer: a goroutine woken on a
// CPU that was idle wakes later than one on a busy CPU, and such a wait
// is the first of a burst (an SPI transfer answering a frame after a
// quiet spell), so it costs CPU only once a burst, never under load.
// No-op on a nil Service.
func (s *Service) SetIdleSpin(d time.Duration) {
	if s != nil {
		s.idleSpin.Store(int64(max(d, 0)))
	}
}

// spinFor returns the poll for a Sleep starting now and marks it in
// progress (the caller calls slept when it ends).
func (s *Service) spinFor(now time.Time) time.Duration {
	spin := time.Duration(s.spin.Load())
	busy := s.sleeping.Add(1) > 1
	if last := s.lastSleep.Load(); !busy && (last == 0 || now.Sub(s.epoch)-time.Duration(last) > idleAfter) {
		spin = max(spin, time.Duration(s.idleSpin.Load()))
	}
	return spin
}

// slept marks a Sleep ended now.
func (s *Service) slept() {
	s.lastSleep.Store(max(int64(time.Since(s.epoch)), 1))
	s.sleeping.Add(-1)
}

// poll yields the processor until the clock reaches end and returns how
// long it polled.
func poll(end time.Time) time.Duration {
	t0 := time.Now()
	now := t0
	for now.Before(end) {
		runtime.Gosched()
		now = time.Now()
	}
	return now.Sub(t0)
}

// Close stops the service goroutine and closes the timerfd. Timers still
// pending fire at once (nothing waits forever); timers set afterwards,
// and Sleep, use the time package. Safe to call more than once; a nil
// Service has nothing to close.
func (s *Service) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	now := time.Now()
	for len(s.pending) > 0 {
		t := heap.Pop(&s.pending).(*Timer)
		t.send(now)
	}
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	errs := []error{s.fd.close()} // wakes the goroutine's read
	for _, fd := range idle {
		errs = append(errs, fd.close())
	}
	<-s.done
	return errors.Join(errs...)
}

// Stats returns the service's accounting; zero for a nil Service.
func (s *Service) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Sleep pauses the calling goroutine for at least d. A nil Service
// calls time.Sleep.
//
// The goroutine waits on a timerfd of its own (from a small pool), read
// through the netpoller, so it is woken straight from epoll, not handed
// on by the service goroutine: one wake-up instead of two.
func (s *Service) Sleep(d time.Duration) {
	if s == nil {
		time.Sleep(d)
		return
	}
	if d <= 0 {
		return
	}
	t0 := time.Now()
	end := t0.Add(d)
	spin := s.spinFor(t0)
	defer s.slept()
	if d <= spin {
		polled := poll(end)
		s.count(func(st *Stats) {
			st.Fired++
			st.Polled += polled
			late := time.Since(end)
			st.Late += late
			st.MaxLate = max(st.MaxLate, late)
		})
		return
	}
	fd, ok := s.takeIdle()
	if !ok {
		t := s.NewTimer(d)
		<-t.C
		return
	}
	if err := fd.set(d - spin); err != nil {
		s.count(func(st *Stats) { st.ArmErrors++ })
		if err := fd.close(); err != nil {
			s.count(func(st *Stats) { st.ArmErrors++ })
		}
		t := s.NewTimer(time.Until(end))
		<-t.C
		return
	}
	err := fd.wait()
	var polled time.Duration
	if spin > 0 {
		polled = poll(end)
	}
	late := time.Since(end)
	s.count(func(st *Stats) {
		st.Fired++
		st.Polled += polled
		st.Late += late
		st.MaxLate = max(st.MaxLate, late)
	})
	if err != nil { // closed under us: cannot happen while we hold it
		s.count(func(st *Stats) { st.ArmErrors++ })
		return
	}
	s.putIdle(fd)
}

// takeIdle returns a private timerfd for Sleep: a pooled one, or a new
// one; false if the service is closed or none can be opened (Sleep then
// uses a service timer).
func (s *Service) takeIdle() (timerfd, bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return timerfd{}, false
	}
	if n := len(s.idle); n > 0 {
		fd := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return fd, true
	}
	s.mu.Unlock()
	fd, err := openTimerfd()
	if err != nil {
		s.count(func(st *Stats) { st.ArmErrors++ })
		return timerfd{}, false
	}
	return fd, true
}

// putIdle returns a private timerfd to the pool, or closes it.
func (s *Service) putIdle(fd timerfd) {
	s.mu.Lock()
	if !s.closed && len(s.idle) < maxIdle {
		s.idle = append(s.idle, fd)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := fd.close(); err != nil {
		s.count(func(st *Stats) { st.ArmErrors++ })
	}
}

func (s *Service) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// SleepUntil pauses the calling goroutine until at least t.
func (s *Service) SleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		s.Sleep(d)
	}
}

// run is the service goroutine: it waits for the timerfd to expire and
// fires the due timers, until Close.
func (s *Service) run() {
	defer close(s.done)
	for {
		if err := s.fd.wait(); err != nil {
			return // closed (Close is the only way the read fails)
		}
		s.fire()
	}
}

// fire sends on every due timer and re-arms the timerfd for the next.
// With SetSpin it also takes the timers due within the spin, polls the
// clock until each one's deadline and fires it then (unless it was
// stopped or reset meanwhile).
func (s *Service) fire() {
	spin := time.Duration(s.spin.Load())
	s.mu.Lock()
	now := time.Now()
	s.armed = time.Time{}
	var soon []soonTimer
	for len(s.pending) > 0 && !s.pending[0].when.After(now.Add(spin)) {
		t := heap.Pop(&s.pending).(*Timer)
		if t.when.After(now) {
			soon = append(soon, soonTimer{t, t.gen})
			continue
		}
		s.fired(t, now)
	}
	if len(s.pending) > 0 && len(soon) == 0 {
		s.arm(now)
	}
	s.mu.Unlock()
	if len(soon) == 0 {
		return
	}
	for _, st := range soon { // in deadline order: heap pops
		polled := poll(st.t.when)
		s.mu.Lock()
		s.stats.Polled += polled
		if st.t.gen == st.gen {
			s.fired(st.t, time.Now())
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	if len(s.pending) > 0 {
		s.arm(time.Now())
	}
	s.mu.Unlock()
}

// soonTimer is a timer fire polls for, with its generation when taken.
type soonTimer struct {
	t   *Timer
	gen uint64
}

// fired sends now on t and accounts for it. Called with s.mu held.
func (s *Service) fired(t *Timer, now time.Time) {
	late := now.Sub(t.when)
	s.stats.Fired++
	s.stats.Late += late
	s.stats.MaxLate = max(s.stats.MaxLate, late)
	t.send(now)
}

// arm sets the timerfd to expire when the earliest pending timer is due,
// unless it already expires by then. Called with s.mu held. If the
// timerfd cannot be armed, the pending timers move to the time package.
func (s *Service) arm(now time.Time) {
	when := s.pending[0].when.Add(-time.Duration(s.spin.Load()))
	if !s.armed.IsZero() && !s.armed.After(when) {
		return
	}
	if err := s.fd.set(max(when.Sub(now), time.Nanosecond)); err != nil {
		s.stats.ArmErrors++
		for len(s.pending) > 0 {
			t := heap.Pop(&s.pending).(*Timer)
			s.fallback(t, t.when.Sub(now))
		}
		s.armed = time.Time{}
		return
	}
	s.armed = when
}

// fallback has the time package fire t after d. Called with s.mu held.
func (s *Service) fallback(t *Timer, d time.Duration) {
	s.stats.Fallbacks++
	gen := t.gen
	t.viaGo = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if t.gen == gen && t.viaGo != nil {
			t.viaGo = nil
			t.send(time.Now())
		}
	})
}

// Timer is a one-shot timer, like time.Timer: C receives the time once
// the duration has passed. Stop and Reset leave no stale value in C.
type Timer struct {
	// C delivers the time the timer fired.
	C <-chan time.Time

	s     *Service    // nil: a time.Timer does the work (goTimer)
	gt    *time.Timer // the time package's timer, when s is nil
	c     chan time.Time
	when  time.Time
	index int         // in s.pending; -1 when not there
	gen   uint64      // bumped by Stop and Reset: invalidates a fallback
	viaGo *time.Timer // a fallback firing this timer, if any
}

// NewTimer returns a timer that fires after d. With a nil Service it is
// a time.Timer in disguise (C is the time.Timer's channel).
func (s *Service) NewTimer(d time.Duration) *Timer {
	if s == nil {
		gt := time.NewTimer(d)
		return &Timer{C: gt.C, gt: gt, index: -1}
	}
	c := make(chan time.Time, 1)
	t := &Timer{C: c, s: s, c: c, index: -1}
	s.mu.Lock()
	t.start(d)
	s.mu.Unlock()
	return t
}

// Stop prevents the timer from firing; it reports whether the timer was
// pending. After Stop, C holds no value until the next Reset fires.
func (t *Timer) Stop() bool {
	if t.s == nil {
		return t.gt.Stop()
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	return t.stop()
}

// Reset makes the timer fire after d (stopping it first); it reports
// whether the timer was pending.
func (t *Timer) Reset(d time.Duration) bool {
	if t.s == nil {
		return t.gt.Reset(d)
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	was := t.stop()
	t.start(d)
	return was
}

// stop takes t out of its service and drains C. Called with s.mu held.
func (t *Timer) stop() bool {
	t.gen++
	was := false
	if t.index >= 0 {
		heap.Remove(&t.s.pending, t.index)
		was = true
	}
	if t.viaGo != nil {
		t.viaGo.Stop()
		t.viaGo = nil
		was = true
	}
	select {
	case <-t.c:
	default:
	}
	return was
}

// start schedules t after d. Called with s.mu held.
func (t *Timer) start(d time.Duration) {
	s := t.s
	now := time.Now()
	t.when = now.Add(d)
	switch {
	case d <= 0:
		t.send(now)
	case s.closed:
		s.fallback(t, d)
	default:
		heap.Push(&s.pending, t)
		if s.pending[0] == t {
			s.arm(now)
		}
	}
}

// send delivers now on C without blocking (C is empty: Stop and Reset
// drain it, and a timer fires once per start).
func (t *Timer) send(now time.Time) {
	select {
	case t.c <- now:
	default:
	}
}

// timerHeap orders pending timers by deadline (container/heap).
type timerHeap []*Timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}
