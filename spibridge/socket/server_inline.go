package socket

import "time"

// inlineTakeover is the watchdog's period: a request run by the reading
// goroutine itself (unthrottled bus) that is still running after one to
// two periods has the reading role taken from it.
const inlineTakeover = time.Millisecond

// Reading-role states of an unthrottled connection: the low bits of role,
// above them the sequence number of the request run inline.
const (
	roleReading  uint64 = iota // the reading goroutine is reading
	roleInline                 // it is running a request itself
	roleHandedOn               // the watchdog gave the role to a new goroutine
	roleMask     uint64 = 3
)

// runInline runs a request in the reading goroutine: no hand-off, the
// cheap path when transfers take no modelled time. A watchdog ticking
// while the connection is busy (never a timer per request: arming one
// wakes the scheduler) passes the reading role on if the request blocks
// (a device or wrapper that stalls, a bus held elsewhere), so later
// requests still reach the bus. It reports whether this goroutine still
// has the role.
func (sc *serverConn) runInline(sl *sockSlot) bool {
	seq := sc.inlineSeq.Add(1)
	sc.role.Store(seq<<2 | roleInline)
	if !sc.wdArmed.Load() && sc.wdArmed.CompareAndSwap(false, true) {
		sc.watchdog.Reset(inlineTakeover)
	}
	sc.transfer(sl)
	return sc.role.CompareAndSwap(seq<<2|roleInline, seq<<2|roleReading)
}

// tick is the watchdog. It takes the reading role from a request that
// has been running inline since the last tick, keeps ticking while the
// connection is busy and stops when it is idle.
func (sc *serverConn) tick() {
	sc.wdMu.Lock()
	if sc.wdStopped {
		sc.wdMu.Unlock()
		return
	}
	r := sc.role.Load()
	seen := sc.wdSeen
	sc.wdSeen = r >> 2
	if r&roleMask == roleInline && r>>2 == seen && sc.role.CompareAndSwap(r, r&^roleMask|roleHandedOn) {
		sc.workers.Add(1)
		sc.watchdog.Reset(inlineTakeover)
		sc.wdMu.Unlock()
		sc.log.Debug("request stuck in the reading goroutine: passing the reading role on")
		sc.readRole()
		return
	}
	defer sc.wdMu.Unlock()
	if r&roleMask == roleInline || r>>2 != seen {
		sc.watchdog.Reset(inlineTakeover) // busy
		return
	}
	sc.wdArmed.Store(false) // idle; runInline arms it again
	if r2 := sc.role.Load(); r2 != r && sc.wdArmed.CompareAndSwap(false, true) {
		sc.watchdog.Reset(inlineTakeover)
	}
}

// stopWatchdog stops the watchdog for good.
func (sc *serverConn) stopWatchdog() {
	if sc.watchdog == nil {
		return
	}
	sc.wdMu.Lock()
	sc.wdStopped = true
	sc.wdMu.Unlock()
	sc.watchdog.Stop()
}
