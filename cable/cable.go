// Package cable is the virtual Ethernet cable between the PHY ports of two
// chips: full duplex, each direction delivering frames in order after the
// propagation delay plus the frame's own serialisation time at link speed.
//
// Faults (loss, bit errors, extra delay, unplugging) are decided per frame
// by a hook set with SetFaults (faults.go).
//
// Each direction has a goroutine that delivers queued frames at their
// arrival. A frame a chip sends is carried by the chip's transmitter
// itself instead (direction.carry) when the frame takes time on the
// cable, nothing is queued ahead of it and no fault source was ever set:
// the transmitter waits out the frame's wire time, which it would wait
// for the line anyway, and hands it to the far port. That is one timer
// wait and one goroutine wake-up fewer per frame, with the same emulated
// times. With timing off there is no wait to share, and the direction's
// goroutine stays a pipeline stage of its own: carrying measured no
// faster there (BenchmarkOneWay), as the far chip's work would then run
// on the transmitter's goroutine.
package cable

import (
	"sync"
	"sync/atomic"
	"time"

	"tsnsim/chip"
	"tsnsim/rtimer"
)

// Defaults for Config fields left zero.
const (
	DefaultLinkBitsPerSec = chip.DefaultLinkBitsPerSec
	DefaultPropagation    = 50 * time.Nanosecond // about 10 m of copper
	DefaultQueue          = 1024                 // frames in flight per direction
)

// Config sets up a cable.
type Config struct {
	// LinkBitsPerSec must match the chips' link speed; negative disables
	// serialisation timing.
	LinkBitsPerSec int64
	// Propagation is the one-way delay of the medium; negative means 0.
	Propagation time.Duration
	// Queue bounds the frames in flight per direction; Send blocks when
	// it is full (only reachable with timing off).
	Queue int
	// Timer, if set, is the precise timer service the cable waits
	// through in a real-time run (rtimer); nil uses the time package,
	// which tests and virtual time need.
	Timer *rtimer.Service
	// Monitor, if set, sees every frame as it enters the cable: from is
	// 0 for frames sent by the first port, 1 for the second; sof is when
	// its first byte after the preamble entered the medium. It is called
	// from the sending chip's transmitter and must not retain frame.
	Monitor func(from int, frame []byte, sof time.Time)
}

func (c *Config) setDefaults() {
	if c.LinkBitsPerSec == 0 {
		c.LinkBitsPerSec = DefaultLinkBitsPerSec
	}
	if c.Propagation == 0 {
		c.Propagation = DefaultPropagation
	}
	c.Propagation = max(c.Propagation, 0)
	if c.Queue <= 0 {
		c.Queue = DefaultQueue
	}
}

// Port is the PHY side of a chip.
type Port interface {
	ConnectPHY(chip.Wire)
	ReceivePHY(frame []byte, sof time.Time)
}

// Cable joins two ports.
type Cable struct {
	ab, ba *direction
}

// Connect plugs a cable between a and b and starts carrying frames.
func Connect(a, b Port, cfg Config) *Cable {
	cfg.setDefaults()
	c := &Cable{ab: newDirection(0, b, cfg, sendsOnLine(a)), ba: newDirection(1, a, cfg, sendsOnLine(b))}
	a.ConnectPHY(c.ab)
	b.ConnectPHY(c.ba)
	return c
}

// Close stops both directions and waits for them. Frames still in flight
// are counted in Stats.LostAtClose.
func (c *Cable) Close() {
	c.ab.close()
	c.ba.close()
}

// Stats is the accounting of one direction. Every frame sent into it is
// in exactly one of Frames, LostInjected, LostUnplugged, LostAtClose (or
// still in flight).
type Stats struct {
	Frames        uint64 // delivered to the far port (Corrupted ones included)
	Bytes         uint64
	LostAtClose   uint64 // in flight when the cable was closed, or sent after
	LostInjected  uint64 // lost by an injected loss fault
	LostUnplugged uint64 // sent while the cable was unplugged
	Corrupted     uint64 // delivered with injected bit errors
}

// Stats returns the accounting of the a-to-b and b-to-a directions.
func (c *Cable) Stats() (ab, ba Stats) { return c.ab.snapshot(), c.ba.snapshot() }

// sendsOnLine reports whether p sends each frame as it starts on its
// line, one at a time, as a chip's transmitter does: then its frames may
// be carried on its goroutine. A socket end sends a burst it read from
// its peer as fast as it comes, ahead of the line, and needs the queue
// to absorb it.
func sendsOnLine(p Port) bool {
	_, ok := p.(*chip.Chip)
	return ok
}

type flight struct {
	frame   []byte
	sof     time.Time     // first byte after the preamble entered the medium
	extra   time.Duration // injected delay
	corrupt bool          // carries injected bit errors
}

type direction struct {
	from  int
	dst   Port
	cfg   Config
	queue chan flight
	// carries: frames may be carried on the sender's goroutine
	// (sendsOnLine); queued counts frames in the queue or in run's
	// hands, which a carried frame must not overtake.
	carries bool
	queued  atomic.Int32
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	faults   atomic.Pointer[Faults] // nil: no faults
	faulted  atomic.Bool            // a fault source was ever set
	nextFree time.Time              // earliest arrival of the next frame, once faulted; run only

	// Frames delivered without injected errors, counted without the
	// mutex on the hot path; snapshot adds them in.
	okFrames, okBytes atomic.Uint64

	// closed is set by close before it drains the queue; senders counts
	// the Sends in progress, which close waits out, so a frame sent
	// after close is counted lost and none is left in a drained queue.
	closed  atomic.Bool
	senders atomic.Int32

	mu    sync.Mutex
	stats Stats
}

func newDirection(from int, dst Port, cfg Config, carries bool) *direction {
	d := &direction{
		from: from, dst: dst, cfg: cfg, carries: carries,
		queue: make(chan flight, cfg.Queue),
		stop:  make(chan struct{}), done: make(chan struct{}),
	}
	go d.run()
	return d
}

// Send implements chip.Wire.
func (d *direction) Send(frame []byte, sof time.Time) {
	if d.cfg.Monitor != nil {
		d.cfg.Monitor(d.from, frame, sof)
	}
	d.senders.Add(1)
	defer d.senders.Add(-1)
	if d.closed.Load() {
		d.count(func(s *Stats) { s.LostAtClose++ })
		return
	}
	f := flight{frame: frame, sof: sof}
	if fp := d.faults.Load(); fp != nil && !d.applyFaults(*fp, &f) {
		return
	}
	if d.carry(f) {
		return
	}
	d.queued.Add(1)
	select {
	case d.queue <- f: // room in the cable: the common case, one channel
		return
	default:
	}
	select {
	case d.queue <- f:
	case <-d.stop:
		d.queued.Add(-1)
		d.count(func(s *Stats) { s.LostAtClose++ })
	}
}

// carry delivers f on the sender's goroutine, at its arrival, and
// reports true, if the direction carries (sendsOnLine), frames take time
// on it (not instant), no fault source was ever set (faults may delay
// frames and need run's ordering), nothing is queued ahead of f and it
// arrives within maxSleep. A frame still waiting when Close begins is
// counted in LostAtClose, as in run.
func (d *direction) carry(f flight) bool {
	if !d.carries || d.instant() || d.faulted.Load() || d.queued.Load() != 0 {
		return false
	}
	arrive := f.sof.Add(d.cfg.Propagation)
	wait := time.Until(arrive.Add(d.wireTime(len(f.frame))))
	if wait > maxSleep {
		return false
	}
	if wait > 0 {
		d.cfg.Timer.Sleep(wait)
	}
	if d.closed.Load() {
		d.count(func(s *Stats) { s.LostAtClose++ })
		return true
	}
	d.dst.ReceivePHY(f.frame, arrive)
	d.delivered(f)
	return true
}

func (d *direction) wireTime(n int) time.Duration {
	if d.cfg.LinkBitsPerSec < 0 {
		return 0
	}
	return time.Duration(int64(n) * 8 * int64(time.Second) / d.cfg.LinkBitsPerSec)
}

// instant reports whether frames take no time on the cable.
func (d *direction) instant() bool { return d.cfg.LinkBitsPerSec < 0 && d.cfg.Propagation == 0 }

func (d *direction) run() {
	defer close(d.done)
	var t *rtimer.Timer
	for {
		var f flight
		var ok bool
		select {
		case <-d.stop:
			return
		default:
		}
		select {
		case f = <-d.queue: // a frame waiting: one channel, no select
			ok = true
		default:
		}
		if !ok {
			select {
			case f = <-d.queue:
			case <-d.stop:
				return
			}
		}
		arrive := f.sof
		if delay := d.cfg.Propagation + f.extra; delay != 0 {
			arrive = arrive.Add(delay) // skipped at 0, as Add is not free (about 75 instructions; issue 13)
		}
		if d.faulted.Load() {
			// A cable cannot reorder: a frame delayed by a fault holds
			// back the ones behind it.
			arrive = later(arrive, d.nextFree)
			d.nextFree = arrive.Add(d.wireTime(len(f.frame)))
		}
		if d.instant() && f.extra == 0 {
			d.dst.ReceivePHY(f.frame, arrive)
			d.delivered(f)
			d.queued.Add(-1)
			continue
		}
		wait := time.Until(arrive.Add(d.wireTime(len(f.frame))))
		if wait > 0 && wait <= maxSleep && d.cfg.Timer != nil {
			// A short wait through the precise timer sleeps outright (one
			// wake-up fewer than a timer); Close waits for it.
			d.cfg.Timer.Sleep(wait)
			wait = 0
			select {
			case <-d.stop:
				d.count(func(s *Stats) { s.LostAtClose++ })
				return
			default:
			}
		}
		if wait > 0 {
			if t == nil {
				t = d.cfg.Timer.NewTimer(wait)
			} else {
				t.Reset(wait)
			}
			select {
			case <-t.C:
			case <-d.stop:
				t.Stop()
				d.count(func(s *Stats) { s.LostAtClose++ })
				return
			}
		}
		d.dst.ReceivePHY(f.frame, arrive)
		d.delivered(f)
		d.queued.Add(-1)
	}
}

// maxSleep is the longest wait a direction sleeps through without
// watching for Close: a frame's time on the wire at 100 Mbit/s is at most
// about 125 µs; injected delays are longer and wait on a timer.
const maxSleep = time.Millisecond

func (d *direction) delivered(f flight) {
	if !f.corrupt {
		d.okFrames.Add(1)
		d.okBytes.Add(uint64(len(f.frame)))
		return
	}
	d.count(func(s *Stats) {
		s.Frames++
		s.Bytes += uint64(len(f.frame))
		if f.corrupt {
			s.Corrupted++
		}
	})
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (d *direction) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

func (d *direction) snapshot() Stats {
	d.mu.Lock()
	s := d.stats
	d.mu.Unlock()
	s.Frames += d.okFrames.Load()
	s.Bytes += d.okBytes.Load()
	return s
}

func (d *direction) close() {
	d.once.Do(func() {
		d.closed.Store(true)
		close(d.stop)
	})
	<-d.done
	for d.senders.Load() > 0 {
		// A Send that started before closed was set, perhaps carrying
		// a frame (at most maxSleep). A sleep, not a spin, so that
		// virtual time moves on to the carrier's wake-up.
		time.Sleep(10 * time.Microsecond)
	}
	for {
		select {
		case <-d.queue:
			d.count(func(s *Stats) { s.LostAtClose++ })
		default:
			return
		}
	}
}
