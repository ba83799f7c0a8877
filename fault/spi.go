package fault

import (
	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/spibridge"
)

// SPI returns the SPI fault source of node's bus, for
// (*spibridge.InProcess).SetFaults.
func (inj *Injector) SPI(node string) spibridge.SPIFaults { return &spiHook{inj: inj, node: node} }

type spiHook struct {
	inj  *Injector
	node string
}

// Decide implements spibridge.SPIFaults. Faults are evaluated in the
// order of the kinds table: a transfer that finds the bus stuck, or
// draws timeout-before, draws nothing else; timeout-after still draws
// latency but no flips (the host discards the MISO of a failed transfer).
func (h *spiHook) Decide(n int, cmd byte) spibridge.SPIFault {
	inj := h.inj
	var f spibridge.SPIFault
	if inj.live[layerIndex(LayerSPI)].Load() == 0 {
		return f
	}
	inj.mu.Lock()
	defer inj.mu.Unlock()
	now := inj.now()
	for _, e := range inj.faults {
		if e.spec.Layer != LayerSPI || !opMatches(e.spec.Op, cmd) {
			continue
		}
		switch e.spec.Kind {
		case "stuck":
			// The first transfer in the window finds the bus stuck until
			// the window ends.
			if e.applies(h.node) && e.inWindow(now) && e.perNode[h.node] == 0 {
				f.Stuck = e.spec.Start + e.spec.Duration - now
				inj.record(e, h.node, now, zap.Duration("stuck", f.Stuck))
				return f
			}
		case "timeout-before":
			if inj.fires(e, h.node, now) {
				f.TimeoutBefore = true
				inj.record(e, h.node, now, zap.Int("len", n))
				return f
			}
		case "timeout-after":
			if !f.TimeoutAfter && inj.fires(e, h.node, now) {
				f.TimeoutAfter = true
				inj.record(e, h.node, now, zap.Int("len", n))
			}
		case "latency":
			if inj.fires(e, h.node, now) {
				d := e.spec.Latency + inj.jitter(e, h.node, e.spec.Jitter)
				f.Latency += d
				inj.record(e, h.node, now, zap.Duration("latency", d))
			}
		case "flip":
			if cmd == proto.CmdRead && n > proto.ReadDataStart && !f.TimeoutAfter && inj.fires(e, h.node, now) {
				bits := max(e.spec.Bits, 1)
				f.FlipMISOBits += bits
				f.FlipSeed = inj.rng(e, h.node).Uint64()
				inj.record(e, h.node, now, zap.Int("bits", bits))
			}
		}
	}
	return f
}

func opMatches(op string, cmd byte) bool {
	switch op {
	case "read":
		return cmd == proto.CmdRead
	case "write":
		return cmd == proto.CmdWrite
	}
	return true
}

var _ spibridge.SPIFaults = (*spiHook)(nil)
