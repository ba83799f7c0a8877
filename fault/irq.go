package fault

import (
	"slices"
	"time"

	"tsnsim/spibridge"
)

// IRQ returns the interrupt-line fault source of node's bus, for
// (*spibridge.InProcess).SetIRQFaults.
func (inj *Injector) IRQ(node string) spibridge.IRQFaults {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	ch := inj.lines[node]
	if ch == nil {
		ch = make(chan struct{}, 1)
		inj.lines[node] = ch
	}
	return &irqHook{inj: inj, node: node, spurious: ch}
}

type irqHook struct {
	inj      *Injector
	node     string
	spurious chan struct{}
}

// Edge implements spibridge.IRQFaults: while irq.stuck is active every
// edge is swallowed (counted as irq.stuck); otherwise irq.lost draws.
func (h *irqHook) Edge() bool {
	inj := h.inj
	if inj.live[layerIndex(LayerIRQ)].Load() == 0 {
		return true
	}
	inj.mu.Lock()
	defer inj.mu.Unlock()
	now := inj.now()
	if e := inj.irqStuck(h.node, now); e != nil {
		inj.record(e, h.node, now)
		return false
	}
	for _, e := range inj.faults {
		if e.spec.Name() == "irq.lost" && inj.fires(e, h.node, now) {
			inj.record(e, h.node, now)
			return false
		}
	}
	return true
}

// Spurious implements spibridge.IRQFaults.
func (h *irqHook) Spurious() <-chan struct{} { return h.spurious }

// irqStuck returns the active irq.stuck fault of node, if any. Called
// with mu held.
func (inj *Injector) irqStuck(node string, now time.Duration) *entry {
	for _, e := range inj.faults {
		if e.spec.Name() == "irq.stuck" && e.applies(node) && e.inWindow(now) {
			return e
		}
	}
	return nil
}

// nextSpurious arms the timer of irq.spurious fault e for its next
// candidate edge: candidates fall at Start + k/Rate, k = 1, 2, ...
// within the window. Called with mu held.
func (inj *Injector) nextSpurious(e *entry, now time.Duration) {
	period := max(time.Duration(float64(time.Second)/e.spec.Rate), time.Nanosecond)
	k := time.Duration(1)
	if now > e.spec.Start {
		k = (now-e.spec.Start)/period + 1
	}
	at := e.spec.Start + k*period
	if e.spec.Duration > 0 && at >= e.spec.Start+e.spec.Duration {
		e.tick = nil
		return
	}
	e.tick = time.AfterFunc(at-now, func() { inj.spuriousTick(e) })
}

// spuriousTick is one candidate edge of irq.spurious fault e: for every
// node it targets (whose line exists), unless the line is stuck, it draws
// and injects an edge. An edge that coalesces with a spurious edge the
// bus has not yet taken is not counted.
func (inj *Injector) spuriousTick(e *entry) {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	if e.removed || inj.closed {
		return
	}
	now := inj.now()
	nodes := make([]string, 0, len(inj.lines))
	for n := range inj.lines {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, node := range nodes {
		if inj.irqStuck(node, now) != nil || !inj.fires(e, node, now) {
			continue
		}
		select {
		case inj.lines[node] <- struct{}{}:
			inj.record(e, node, now)
		default:
		}
	}
	inj.nextSpurious(e, now)
}

var _ spibridge.IRQFaults = (*irqHook)(nil)
