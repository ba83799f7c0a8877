package spibridge

import (
	"context"
	"sync"
	"sync/atomic"
)

// busLock is the ownership of one bus: a lock whose wait can be given up
// (ctx, Close) and whose waiters get the bus in arrival order, as
// messages in a Linux SPI controller's queue. Taking a free bus and
// giving up a bus nobody waits for are one atomic compare-and-swap each;
// only contention takes the mutex.
type busLock struct {
	state atomic.Int32 // busFree, busHeld or busQueued

	mu      sync.Mutex
	waiters []chan struct{} // FIFO; a waiter's channel is closed when it is handed the bus
}

const (
	busFree   = 0
	busHeld   = 1 // held, nobody waits
	busQueued = 2 // held, waiters may be queued (under mu)
)

// tryLock takes the bus if it is free.
func (l *busLock) tryLock() bool { return l.state.CompareAndSwap(busFree, busHeld) }

// lock takes the bus, waiting in arrival order until it is handed over,
// ctx is done or closed is closed. It returns nil once the bus is held,
// otherwise the reason it gave up (errClosed or a wrapped ctx error),
// without the bus.
func (l *busLock) lock(ctx context.Context, closed <-chan struct{}) error {
	if l.tryLock() {
		return nil
	}
	l.mu.Lock()
	for {
		if l.state.CompareAndSwap(busFree, busHeld) {
			l.mu.Unlock()
			return nil
		}
		if l.state.CompareAndSwap(busHeld, busQueued) || l.state.Load() == busQueued {
			break
		}
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	var err error
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		err = errWaitCancelled(ctx.Err())
	case <-closed:
		err = errClosed
	}
	l.mu.Lock()
	for i, w := range l.waiters {
		if w == ch {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			l.mu.Unlock()
			return err
		}
	}
	l.mu.Unlock()
	// Handed the bus while giving up: pass it on.
	<-ch
	l.unlock()
	return err
}

// unlock gives the bus up: to the longest waiter if there is one.
func (l *busLock) unlock() {
	if l.state.CompareAndSwap(busHeld, busFree) {
		return
	}
	l.mu.Lock()
	if len(l.waiters) == 0 {
		l.state.Store(busFree)
		l.mu.Unlock()
		return
	}
	next := l.waiters[0]
	l.waiters[0] = nil
	l.waiters = l.waiters[1:]
	if len(l.waiters) == 0 {
		l.waiters = nil
		l.state.Store(busHeld) // handed over, nobody else waits
	}
	l.mu.Unlock()
	close(next)
}
