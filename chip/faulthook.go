package chip

// NoFIFOLimit, given to SetFIFOLimits, leaves a FIFO's limit to its
// control register.
const NoFIFOLimit = -1

// fifoOverride is a fault's cap on the FIFO limits; a field below 0
// leaves that FIFO alone.
type fifoOverride struct {
	hostFrames, rxWords, rxMeta int
}

// SetFIFOLimits caps the effective capacities of the host TX FIFO
// (frames), the RX frame FIFO (16-byte words) and the RX metadata FIFO
// (entries) at run time, as fault injection does: a FIFO's limit becomes
// the smaller of its register-configured limit and the cap. A cap of
// NoFIFOLimit (any value below 0) removes it, restoring the configured
// limit; SetFIFOLimits(NoFIFOLimit, NoFIFOLimit, NoFIFOLimit) removes
// all. A cap of 0 makes the FIFO refuse everything: hostFrames 0 is "host
// FIFO full", every TX write is refused and counted in
// FS_TOTAL_BACK_PRESSURE_EVENT_CNT.
//
// Entries already queued beyond a lowered limit stay and drain normally;
// new ones are refused and counted by the chip's existing counters (host:
// back-pressure; RX: FD_FIFO_FULL_DROP_*). The control registers keep the
// values software wrote.
func (c *Chip) SetFIFOLimits(hostFrames, rxWords, rxMeta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hostFrames < 0 && rxWords < 0 && rxMeta < 0 {
		c.fifoCap = nil
	} else {
		c.fifoCap = &fifoOverride{hostFrames, rxWords, rxMeta}
	}
	c.applyControl()
}

// applyFIFOCap lowers the FIFO limits set from the registers to the
// fault's caps. Called with c.mu held, from applyControl.
func (c *Chip) applyFIFOCap() {
	o := c.fifoCap
	if o.hostFrames >= 0 {
		c.host.SetLimit(min(c.host.Limit(), o.hostFrames))
	}
	if o.rxWords >= 0 {
		c.rxFrames.SetLimit(min(c.rxFrames.Limit(), o.rxWords))
	}
	if o.rxMeta >= 0 {
		c.rxMeta.SetLimit(min(c.rxMeta.Limit(), o.rxMeta))
	}
}
