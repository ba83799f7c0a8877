package fault

import (
	"go.uber.org/zap"

	"tsnsim/cable"
)

// Cable returns the fault source of the cable direction carrying the
// frames node sends, for (*cable.Cable).SetFaults.
func (inj *Injector) Cable(node string) cable.Faults { return &cableHook{inj: inj, node: node} }

type cableHook struct {
	inj  *Injector
	node string
}

// Frame implements cable.Faults. An unplugged or lost frame draws nothing
// else; corruption and delay combine.
func (h *cableHook) Frame(n int) cable.FrameFault {
	inj := h.inj
	var f cable.FrameFault
	if inj.live[layerIndex(LayerCable)].Load() == 0 {
		return f
	}
	inj.mu.Lock()
	defer inj.mu.Unlock()
	now := inj.now()
	for _, e := range inj.faults {
		if e.spec.Layer != LayerCable {
			continue
		}
		switch e.spec.Kind {
		case "unplug":
			if e.applies(h.node) && e.inWindow(now) {
				inj.record(e, h.node, now, zap.Int("len", n))
				return cable.FrameFault{Unplugged: true}
			}
		case "loss":
			if inj.fires(e, h.node, now) {
				inj.record(e, h.node, now, zap.Int("len", n))
				return cable.FrameFault{Drop: true}
			}
		case "corrupt":
			if inj.fires(e, h.node, now) {
				bits := max(e.spec.Bits, 1)
				f.FlipBits += bits
				f.FlipSeed = inj.rng(e, h.node).Uint64()
				inj.record(e, h.node, now, zap.Int("bits", bits))
			}
		case "delay":
			if inj.fires(e, h.node, now) {
				d := e.spec.Latency + inj.jitter(e, h.node, e.spec.Jitter)
				f.Delay += d
				inj.record(e, h.node, now, zap.Duration("delay", d))
			}
		}
	}
	return f
}

var _ cable.Faults = (*cableHook)(nil)
