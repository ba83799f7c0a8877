package socket

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
)

// One driver per chip. The first client that enables the chip (writes
// TSN_ENABLE = 1 into TSN_SYSTEM_CONTROL) owns it; until it disables the
// chip again (TSN_ENABLE = 0) or another client takes it over, the
// transactions of a driver (enabling or disabling, TX frame writes, RX
// frame and metadata reads) from any other client are refused with
// statusHeld (EBUSY) and a text naming the owner. Register reads and
// other register writes stay open to every client (tsnsim regs). The
// owner survives the loss of its connections: a client that identifies
// itself (an identify message with its id) keeps the chip across
// reconnects, and a driver that died without disabling the chip holds it
// until a new client takes it over explicitly (identify with the
// takeover flag, tsnsim run --takeover), which closes the old driver's
// connections.

// anonKeyBit marks the keys the server gives connections that did not
// identify (clients that do not know the identify message): each such
// connection is a client of its own. Client ids have it clear.
const anonKeyBit = 1 << 63

// chipOwner is the driver of a chip.
type chipOwner struct {
	key   uint64
	label string
	since time.Time
}

// driverOp is what a transaction means for the chip's ownership.
type driverOp uint8

const (
	opNone    driverOp = iota // open to every client
	opClaim                   // enables the chip: the caller becomes its driver
	opRelease                 // disables the chip: its driver lets it go
	opDriver                  // TX frame write, RX frame or metadata read
)

// enableReg is the register write address of TSN_SYSTEM_CONTROL's low
// half, which holds TSN_ENABLE.
const enableReg = proto.AddrRegWrite | (regs.TSNSystemControl+4)&proto.RegMask

// classify says what tx, a MOSI transaction, means for ownership. It
// looks at three bytes at most for every transaction but the enable
// write.
func classify(tx []byte) driverOp {
	if len(tx) < proto.HeaderLen {
		return opNone
	}
	addr := binary.BigEndian.Uint16(tx[1:3])
	switch tx[0] {
	case proto.CmdWrite:
		switch {
		case addr&proto.AddrSpace == proto.AddrTxFrame:
			return opDriver
		case addr == enableReg && len(tx) >= proto.RegWriteLen:
			if regs.TSNEnable.Get(uint64(binary.BigEndian.Uint32(tx[proto.HeaderLen:]))) != 0 {
				return opClaim
			}
			return opRelease
		}
	case proto.CmdRead:
		if s := addr & proto.AddrSpace; s == proto.AddrRxFrame || s == proto.AddrRxMeta {
			return opDriver
		}
	}
	return opNone
}

// errHeld is the refusal of a driver transaction from a client that does
// not own the chip.
type errHeld struct{ text string }

func (e *errHeld) Error() string { return e.text }

// checkOwner decides whether sc may run a transaction of kind op, and
// updates the ownership. A nil result lets it run.
func (sc *serverConn) checkOwner(op driverOp) error {
	s := sc.srv
	key := sc.key.Load()
	if op == opDriver {
		if k := s.ownerKey.Load(); k == 0 || k == key {
			return nil // the hot path: no lock
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.owner
	switch {
	case o == nil && op == opClaim:
		s.setOwner(&chipOwner{key: key, label: sc.label, since: time.Now()})
		s.log.Info("driver attached: it owns the chip", zap.String("driver", sc.label))
		return nil
	case o == nil || o.key == key:
		if o != nil && op == opRelease {
			s.log.Info("driver detached: the chip is free", zap.String("driver", o.label), zap.Duration("held", time.Since(o.since).Round(time.Millisecond)))
			s.setOwner(nil)
		}
		return nil
	case sc.takeover && op == opClaim:
		s.stats.Takeovers++
		s.log.Info("driver replaced (takeover)", zap.String("old", o.label), zap.String("new", sc.label))
		for c := range s.conns {
			if c.key.Load() == o.key {
				c.takenOver.Store(true)
				c.cancel()
			}
		}
		// A connection of the old driver that the server has not read
		// the identity of yet (its interrupt connection, opened just
		// before) is closed when it has (identified).
		for c := range s.conns {
			if !c.known {
				c.replacedKeys = append(c.replacedKeys, o.key)
			}
		}
		s.setOwner(&chipOwner{key: key, label: sc.label, since: time.Now()})
		return nil
	}
	s.stats.HeldRefused++
	state := "its connection is gone; if it is dead, attach with --takeover to replace it"
	for c := range s.conns {
		if c.key.Load() == o.key {
			state = "still connected; stop it first, or attach with --takeover to replace it"
			break
		}
	}
	s.heldLog.logAt(s.log, zap.InfoLevel, "driver transaction refused: another client drives the chip",
		zap.String("client", sc.label), zap.String("driver", o.label))
	return &errHeld{fmt.Sprintf("spibridge: chip %s is driven by %s (since %s), %s",
		s.cfg.Name, o.label, o.since.Format("15:04:05"), state)}
}

// setOwner changes the owner and refreshes the idle exemptions. Called
// under mu.
func (s *Server) setOwner(o *chipOwner) {
	s.owner = o
	if o == nil {
		s.ownerKey.Store(0)
	} else {
		s.ownerKey.Store(o.key)
	}
	s.refreshExempt()
}

// identified records sc's identify message.
func (sc *serverConn) identified(m identify) {
	s := sc.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	sc.key.Store(m.id &^ anonKeyBit)
	sc.takeover = m.takeover
	sc.known = true
	if slices.Contains(sc.replacedKeys, sc.key.Load()) {
		// Its driver was taken over before the server read this: the
		// connection goes the way of the driver's others.
		sc.takenOver.Store(true)
		sc.cancel()
	}
	sc.label = fmt.Sprintf("%q", m.label)
	if p := socketPeer(sc.nc); p != "-" {
		sc.label += " at " + p
	}
	s.refreshExempt()
	sc.log.Debug("client identified", zap.String("label", m.label), zap.Bool("takeover", m.takeover))
}

// refreshExempt recomputes which connections the idle limit spares: those
// subscribed to interrupts, and every connection of a client that has a
// subscription or owns the chip. Called under mu.
func (s *Server) refreshExempt() {
	keys := map[uint64]bool{}
	if s.owner != nil {
		keys[s.owner.key] = true
	}
	for c := range s.subs {
		keys[c.key.Load()] = true
	}
	for c := range s.conns {
		c.exempt.Store(keys[c.key.Load()])
	}
}
