package spidev

import (
	"sync"
	"sync/atomic"
	"time"
)

// PollInterrupt stands in for an interrupt line that is not wired: it
// delivers one edge every period, so the driver looks for received frames
// that often (and finds an empty RX FIFO most of the time). Edges coalesce
// like a real line's: a driver busy for several periods sees one.
type PollInterrupt struct {
	period time.Duration
	c      chan struct{}
	edges  atomic.Uint64
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// NewPollInterrupt starts delivering an edge every period. period must be
// positive (NewPollInterrupt panics otherwise, as time.NewTicker does);
// Close stops it.
func NewPollInterrupt(period time.Duration) *PollInterrupt {
	if period <= 0 {
		panic("spibridge: NewPollInterrupt: non-positive period")
	}
	p := &PollInterrupt{
		period: period, c: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go p.run()
	return p
}

// run is the polling goroutine: one edge per tick until Close.
func (p *PollInterrupt) run() {
	defer close(p.done)
	t := time.NewTicker(p.period)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.edges.Add(1)
			signalEdge(p.c)
		case <-p.stop:
			return
		}
	}
}

// Interrupt implements InterruptSource.
func (p *PollInterrupt) Interrupt() <-chan struct{} { return p.c }

// Period returns the polling period.
func (p *PollInterrupt) Period() time.Duration { return p.period }

// Edges returns how many edges have been generated, coalesced ones
// included.
func (p *PollInterrupt) Edges() uint64 { return p.edges.Load() }

// Close implements InterruptSource: it stops the ticker and waits for the
// polling goroutine. Closing twice is a no-op.
func (p *PollInterrupt) Close() error {
	p.once.Do(func() { close(p.stop) })
	<-p.done
	return nil
}

var _ InterruptSource = (*PollInterrupt)(nil)
