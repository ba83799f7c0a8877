package topology

import (
	"context"
	"time"

	"tsnsim/chip/regs"
)

// drainPoll is how often Drain looks at the queues.
const drainPoll = time.Millisecond

// Quiet reports whether no frame is on its way: no driver has a frame on
// its TX ring and, in-process, no chip holds a frame in its host TX FIFO
// or RX FIFO and none is on the cable. Attached (the chips in another
// process), only the drivers' rings are seen.
func (t *Topology) Quiet() bool {
	for _, n := range t.Nodes {
		if n.Driver.Stats().TxQueued > 0 {
			return false
		}
		if n.Chip == nil {
			continue
		}
		if cs := n.Chip.Stats(); cs.HostFIFO.Len > 0 || cs.RxMetaFIFO.Len > 0 {
			return false
		}
	}
	if t.Cable == nil {
		return true
	}
	ab, ba := t.Cable.Stats()
	for i, cs := range []struct{ frames, lost uint64 }{
		{ab.Frames, ab.LostInjected + ab.LostUnplugged + ab.LostAtClose},
		{ba.Frames, ba.LostInjected + ba.LostUnplugged + ba.LostAtClose},
	} {
		if t.Nodes[i].Chip.Register(regs.FTTotalTxFrameCnt) != cs.frames+cs.lost {
			return false
		}
	}
	return true
}

// Drain waits until the topology is Quiet (twice in a row, a poll
// apart), at most timeout or until ctx ends; it reports whether it got
// there. Call it after the hosts stopped offering frames and before
// Close, so that frames in flight are delivered rather than left in a
// queue.
func (t *Topology) Drain(ctx context.Context, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	quiet := false
	for {
		if t.Quiet() {
			if quiet {
				return true
			}
			quiet = true
		} else {
			quiet = false
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
