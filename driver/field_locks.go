package driver

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// The field driver's two locks (FieldLockOrder) and the lock watchdog.
//
// The register path (get_sys_clock, the PHC read) takes the register
// lock, reads SYSCOUNT_H, then takes the TX-queue lock (it pauses TX so
// no frame write lands between the halves) and reads L and H again. The
// SPI thread takes the TX-queue lock to take a frame and then the
// register (SPI) lock to write it; ndo_start_xmit runs under the
// TX-queue lock. Register reads during heavy TX therefore meet the SPI
// thread in opposite orders: ABBA. [model: chip.md names the two locks
// and the deadlock, not the code paths]
//
// The watchdog is lockdep's check done when a task blocks: it follows
// waits-for edges (task -> lock it waits on -> task holding it) and, if
// they lead back to the blocking task, every task on the cycle is blocked
// for good. It counts the cycle (Stats.Deadlocks), logs who waits on whom
// and delivers the report on Driver.Deadlock, once. The tasks stay
// blocked until their context ends (Stop cancels the session's).

// lockGraph guards the holders and waiters of the field driver's locks.
type lockGraph struct{ mu sync.Mutex }

// fieldLock is a sleeping lock (a kernel mutex) that honours
// cancellation and is re-entrant for its holder.
type fieldLock struct {
	g      *lockGraph
	name   string
	sem    chan struct{}
	holder *task
	depth  int
}

func (g *lockGraph) newLock(name string) *fieldLock {
	return &fieldLock{g: g, name: name, sem: make(chan struct{}, 1)}
}

// lock takes l for t, blocking until it is free or ctx ends; a cycle of
// waits is reported to d.
func (l *fieldLock) lock(ctx context.Context, t *task, d *Driver) error {
	g := l.g
	g.mu.Lock()
	if l.holder == t {
		l.depth++
		g.mu.Unlock()
		return nil
	}
	select {
	case l.sem <- struct{}{}:
		l.holder, l.depth = t, 1
		g.mu.Unlock()
		return nil
	default:
	}
	t.waiting = l
	report := g.cycle(t)
	g.mu.Unlock()
	if report != "" {
		d.reportDeadlock(report)
	}
	select {
	case l.sem <- struct{}{}:
		g.mu.Lock()
		t.waiting, l.holder, l.depth = nil, t, 1
		g.mu.Unlock()
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		t.waiting = nil
		g.mu.Unlock()
		return fmt.Errorf("driver: waiting for the %s: %w", l.name, ctx.Err())
	}
}

// unlock releases one hold of l by t.
func (l *fieldLock) unlock(t *task) {
	g := l.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if l.holder != t {
		panic("driver: " + l.name + " released by " + t.name + ", held by another task")
	}
	if l.depth--; l.depth == 0 {
		l.holder = nil
		<-l.sem
	}
}

// cycle follows the waits-for edges from t, which has just blocked, and
// describes the cycle back to t, or returns "".
func (g *lockGraph) cycle(t *task) string {
	var steps []string
	seen := map[*task]bool{}
	for cur := t; ; {
		l := cur.waiting
		if l == nil || l.holder == nil || seen[cur] {
			return ""
		}
		seen[cur] = true
		steps = append(steps, fmt.Sprintf("%s waits for the %s held by %s", cur.name, l.name, l.holder.name))
		if cur = l.holder; cur == t {
			return strings.Join(steps, "; ")
		}
	}
}

// reportDeadlock counts and logs a deadlock and delivers the first
// report on Deadlock.
func (d *Driver) reportDeadlock(report string) {
	f := &d.fld
	f.mu.Lock()
	f.dead++
	first := !f.reported
	f.reported = true
	f.mu.Unlock()
	d.log.Error("deadlock: lock cycle found by the lock watchdog", zap.String("cycle", report))
	if first {
		f.deadlock <- report
	}
}
