// Package chip models the LAN1QTSN: an SPI-attached TSN Ethernet MAC.
//
// A Chip decodes SPI transactions (Transact), keeps the register file,
// the host TX FIFO, the TX scheduler and transmitter, the RX decoder and
// RX FIFOs, the SYSCOUNT clock and the interrupt line. Its PHY side is the
// Wire it transmits into and ReceivePHY, which a cable calls.
//
// All timing uses the standard time package, so a chip runs in virtual
// time under testing/synctest.
package chip

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"tsnsim/chip/clock"
	"tsnsim/chip/fifo"
	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/rtimer"
)

// Defaults for Config fields left zero. Values not given by chip.md are
// modelling choices, documented in the README.
const (
	DefaultHostFIFOFrames   = 128  // HW_QUEUE_SIZE
	DefaultRxFrameFIFOWords = 4096 // 64 KiB in 16-byte words
	DefaultRxMetaFIFOSize   = 256  // entries
	DefaultLinkBitsPerSec   = 100_000_000
	DefaultTxLatency        = 300 * time.Nanosecond // TX_ADJUST_NS
	DefaultRxLatency        = 512 * time.Nanosecond // RX_ADJUST_NS
	PreambleLen             = 8                     // preamble + SFD bytes
	FrameFIFOWordLen        = 16                    // bytes per RX frame FIFO word
)

// Hard limits of the register fields that size the FIFOs.
const (
	maxHostFIFOFrames   = 1<<10 - 1 // HOST_FIFO_FULL_LIMIT[9:0]
	maxRxFrameFIFOWords = 1<<13 - 1 // MAX_FRAME_FIFO_DATA_COUNT[44:32]
	maxRxMetaFIFOSize   = 1<<9 - 1  // MAX_META_FIFO_DATA_COUNT[24:16]
)

// BuildInfo is the content of TSN_SYSTEM_INFO.
type BuildInfo struct {
	Year, Month, Day, Commit uint8 // Year counts from 2000
}

// Config sets up a chip. Zero fields take the defaults above.
type Config struct {
	Name string           // node name, for logs
	MAC  net.HardwareAddr // reset value of TSN_MAC_ADDR
	Info BuildInfo        // reset value of TSN_SYSTEM_INFO

	// Epoch is when SYSCOUNT read 0 (zero: when New is called). Chips
	// with the same Epoch, period and no drift have aligned clocks.
	Epoch      time.Time
	TickPeriod time.Duration // default clock.DefaultPeriod
	DriftPPM   float64

	HostFIFOFrames   int // host TX FIFO capacity, frames (max 1023)
	RxFrameFIFOWords int // RX frame FIFO capacity, 16-byte words (max 8191)
	RxMetaFIFOSize   int // RX metadata FIFO capacity, entries (max 511)

	// LinkBitsPerSec is the PHY speed; negative disables serialisation
	// timing (frames leave back to back in zero time).
	LinkBitsPerSec int64
	TxLatency      time.Duration // MAC+PHY TX latency, stamp point to wire
	RxLatency      time.Duration // MAC+PHY RX latency, wire to stamp point

	// OnPPS, if set, is called with the chip's Name for every PPS pulse
	// (after its edge is offered on PPS), on the chip's PPS goroutine,
	// outside the chip's lock. It must not block: the --spi-trace writer
	// uses it to put the edges in the trace.
	OnPPS func(node string, e PPSEdge)

	// Timer, if set, is the precise timer service the transmitter waits
	// through in a real-time run (rtimer); nil uses the time package,
	// which tests and virtual time need.
	Timer *rtimer.Service

	Logger *zap.Logger
}

func (c *Config) setDefaults() {
	if c.Epoch.IsZero() {
		c.Epoch = time.Now()
	}
	if c.MAC == nil {
		c.MAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	}
	if c.Info == (BuildInfo{}) {
		c.Info = BuildInfo{Year: 26, Month: 11, Day: 21, Commit: 1}
	}
	if c.HostFIFOFrames <= 0 {
		c.HostFIFOFrames = DefaultHostFIFOFrames
	}
	if c.RxFrameFIFOWords <= 0 {
		c.RxFrameFIFOWords = DefaultRxFrameFIFOWords
	}
	if c.RxMetaFIFOSize <= 0 {
		c.RxMetaFIFOSize = DefaultRxMetaFIFOSize
	}
	c.HostFIFOFrames = min(c.HostFIFOFrames, maxHostFIFOFrames)
	c.RxFrameFIFOWords = min(c.RxFrameFIFOWords, maxRxFrameFIFOWords)
	c.RxMetaFIFOSize = min(c.RxMetaFIFOSize, maxRxMetaFIFOSize)
	if c.LinkBitsPerSec == 0 {
		c.LinkBitsPerSec = DefaultLinkBitsPerSec
	}
	if c.TxLatency == 0 {
		c.TxLatency = DefaultTxLatency
	}
	if c.RxLatency == 0 {
		c.RxLatency = DefaultRxLatency
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Wire is the PHY side of a chip: what its transmitter sends into.
// Send hands over a frame (incl. FCS) whose first byte after the preamble
// is on the wire at sof. Send may block while the medium is full and must
// not retain frame's buffer beyond the call unless it owns it: the chip
// never reuses a frame buffer after Send.
type Wire interface {
	Send(frame []byte, sof time.Time)
}

// txEntry is one frame in the host FIFO.
type txEntry struct {
	meta    proto.TxMetadata
	frame   []byte // incl. FCS
	delayed bool   // moved to its delay window
	// ready is the earliest emulated time the frame could start: when it
	// entered the host FIFO, TSN was enabled, or its window opened.
	ready  time.Time
	opens  uint64 // SYSCOUNT at which its window opens, when waited is set
	waited bool   // the scheduler held it for its window
}

// Chip is one emulated LAN1QTSN. Create it with New, connect its PHY with
// ConnectPHY, then Start it; Close stops it.
type Chip struct {
	cfg   Config
	clock *clock.Clock
	log   *zap.Logger

	mu       sync.Mutex
	regs     *regs.File
	host     *fifo.FIFO[txEntry]
	rxFrames *fifo.FIFO[[]byte]
	rxMeta   *fifo.FIFO[proto.RxMetadata]
	hostWr   uint64      // frames written into the host FIFO, ever
	hostRd   uint64      // frames taken out of the host FIFO, ever
	sending  atomic.Bool // transmitter is handing a frame to the wire
	lineFree time.Time   // when the line is free for the next preamble; written by the transmitter under mu
	enabled  time.Time   // when TSN_ENABLE was last set
	decodeAt time.Time   // when the transaction being decoded is decoded (TransactAt; zero: not read yet, see decodeTime); under mu
	phy      Wire
	errs     [numProtocolErrors]uint64
	fifoCap  *fifoOverride // fault-injected FIFO caps (SetFIFOLimits); nil: none

	pps      chan PPSEdge  // PPS output edges
	ppsKick  chan struct{} // PPS registers written
	ppsDone  chan struct{}
	ppsStats PPSStats

	irq     chan struct{} // falling-edge notifications, coalesced
	kick    chan struct{} // wakes the transmitter
	stop    chan struct{}
	done    chan struct{}
	started bool

	// timeEdges is set by TimeEdges: each falling edge's time is kept
	// in edgeAt, in ns since edgeBase (New's time.Now; 0: none yet), so
	// LastEdge reads it without the chip's lock. edgeBase is also the
	// base of now.
	timeEdges atomic.Bool
	edgeAt    atomic.Int64
	edgeBase  time.Time
}

// now is time.Now for the frame path, read from the monotonic clock only:
// edgeBase plus the monotonic time since it. time.Now reads the wall
// clock as well (70 ns here against 50 ns; the 20 ns are about 2 % of a
// 64-byte frame's modelled work, issue 13). The model only subtracts and
// compares its times, which Go does on the monotonic readings. The wall
// reading of the result, which a capture's timestamps show, follows the
// monotonic clock from New on: a step of the system clock after New does
// not show in it. In a synctest bubble time.Since reads the bubble's
// clock and now is exactly time.Now.
func (c *Chip) now() time.Time { return c.edgeBase.Add(time.Since(c.edgeBase)) }

// New returns a chip at its reset state. It does not transmit until
// Start is called.
func New(cfg Config) *Chip {
	cfg.setDefaults()
	c := &Chip{
		cfg:      cfg,
		clock:    clock.New(cfg.Epoch, cfg.TickPeriod, cfg.DriftPPM),
		log:      cfg.Logger.Named("chip").With(zap.String("node", cfg.Name)),
		irq:      make(chan struct{}, 1),
		pps:      make(chan PPSEdge, ppsBuffer),
		ppsKick:  make(chan struct{}, 1),
		ppsDone:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		edgeBase: time.Now(),
	}
	c.host = fifo.New[txEntry](cfg.HostFIFOFrames, nil)
	c.rxFrames = fifo.New(cfg.RxFrameFIFOWords, frameWords)
	c.rxMeta = fifo.New[proto.RxMetadata](cfg.RxMetaFIFOSize, nil)
	c.regs = regs.NewFile(c.resetValues(), c.liveRegister)
	c.applyControl()
	return c
}

func frameWords(f []byte) int { return (len(f) + FrameFIFOWordLen - 1) / FrameFIFOWordLen }

func (c *Chip) resetValues() map[uint16]uint64 {
	var mac uint64
	for _, b := range c.cfg.MAC[:6] {
		mac = mac<<8 | uint64(b)
	}
	info := c.cfg.Info
	rx, _ := regs.Lookup(regs.TSNRxControl)
	tx, _ := regs.Lookup(regs.TSNTxControl)
	return map[uint16]uint64{
		regs.TSNMACAddr: mac,
		regs.TSNSystemInfo: regs.InfoYear.Put(0, uint64(info.Year)) | regs.InfoMonth.Put(0, uint64(info.Month)) |
			regs.InfoDay.Put(0, uint64(info.Day)) | regs.InfoCommit.Put(0, uint64(info.Commit)),
		regs.TSNRxControl: regs.RxMaxMetaFIFODataCount.Put(
			regs.RxMaxFrameFIFODataCount.Put(rx.Reset, uint64(c.cfg.RxFrameFIFOWords)), uint64(c.cfg.RxMetaFIFOSize)),
		regs.TSNTxControl: regs.TxHostFIFOFullLimit.Put(tx.Reset, uint64(c.cfg.HostFIFOFrames)),
	}
}

// applyControl makes the FIFO limits follow TSN_RX_CONTROL and
// TSN_TX_CONTROL, capped by injected faults (SetFIFOLimits). Called with c.mu held (or before the chip is shared).
func (c *Chip) applyControl() {
	rx := c.regs.Get(regs.TSNRxControl)
	c.rxFrames.SetLimit(int(regs.RxMaxFrameFIFODataCount.Get(rx)))
	c.rxMeta.SetLimit(int(regs.RxMaxMetaFIFODataCount.Get(rx)))
	c.host.SetLimit(int(regs.TxHostFIFOFullLimit.Get(c.regs.Get(regs.TSNTxControl))))
	if c.fifoCap != nil {
		c.applyFIFOCap()
	}
}

// liveRegister computes Live registers; called by the register file with
// c.mu held.
func (c *Chip) liveRegister(off uint16) uint64 {
	switch off {
	case regs.TSNSysCount:
		return c.clock.Now()
	case regs.TSNRxFIFOStatus:
		return regs.RxFrameFIFODataCnt.Put(0, uint64(c.rxFrames.Used())) |
			regs.RxMetaFIFODataCnt.Put(0, uint64(c.rxMeta.Used()))
	case regs.FSGeneralStatus:
		v := regs.FSHostFIFORdCnt.Put(0, c.hostRd) | regs.FSHostFIFOWrCnt.Put(0, c.hostWr)
		full := c.host.Used() >= c.host.Capacity()
		userFull := c.host.Full()
		v = regs.FSAXISTready.Put(v, b2u(!userFull))
		v = regs.FSHostFIFOUserFull.Put(v, b2u(userFull))
		v = regs.FSHostFIFOEmpty.Put(v, b2u(c.host.Len() == 0))
		return regs.FSHostFIFOFull.Put(v, b2u(full))
	}
	return 0
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Name returns the node name the chip was configured with.
func (c *Chip) Name() string { return c.cfg.Name }

// Clock returns the chip's SYSCOUNT clock.
func (c *Chip) Clock() *clock.Clock { return c.clock }

// MAC returns the current content of TSN_MAC_ADDR.
func (c *Chip) MAC() net.HardwareAddr {
	v := c.Register(regs.TSNMACAddr)
	mac := make(net.HardwareAddr, 6)
	for i := 5; i >= 0; i-- {
		mac[i] = byte(v)
		v >>= 8
	}
	return mac
}

// ConnectPHY attaches the wire the transmitter sends into. Frames
// transmitted with no wire attached leave into nothing (link down).
func (c *Chip) ConnectPHY(w Wire) {
	c.mu.Lock()
	c.phy = w
	c.mu.Unlock()
}

// Start starts the transmitter. It is a no-op when already started.
func (c *Chip) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return
	}
	c.started = true
	go c.transmitter()
	go c.ppsLoop()
}

// Close stops the transmitter and waits for it. Frames still in the host
// FIFO stay there (visible in FS_GENERAL_STATUS and Stats).
func (c *Chip) Close() {
	c.mu.Lock()
	started := c.started
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.mu.Unlock()
	if started {
		<-c.done
		<-c.ppsDone
	}
}

// IRQ returns the interrupt line's edge notifications: a value is sent
// (coalesced, never blocking the chip) each time the line goes from
// deasserted to asserted, that is when the RX metadata FIFO becomes
// non-empty. The line is active low, so this is the falling edge a
// driver requests.
func (c *Chip) IRQ() <-chan struct{} { return c.irq }

// IRQAsserted reports the level of the interrupt line: asserted while the
// RX metadata FIFO is not empty.
func (c *Chip) IRQAsserted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rxMeta.Len() > 0
}

// TimeEdges makes the chip keep the time of each falling edge of its
// interrupt line, for LastEdge. A bus with a timing model turns it on
// (spibridge.EdgeTimer); without it an edge costs nothing more.
func (c *Chip) TimeEdges() { c.timeEdges.Store(true) }

// LastEdge returns when the chip last raised its interrupt line (a
// falling edge) in the model, zero if it has not since TimeEdges. An
// edge comes when a frame is in the RX FIFO: at the end of the frame on
// the line, its start of frame plus its time at the chip's link speed
// (the cable's too, unless set apart). In a real-time run the chip may
// see the frame later than that, when a wake-up on its way was late.
func (c *Chip) LastEdge() time.Time {
	ns := c.edgeAt.Load()
	if ns == 0 {
		return time.Time{}
	}
	return c.edgeBase.Add(time.Duration(ns))
}

// raiseIRQ signals a falling edge, raised in the model at the end of
// the n-byte frame whose start of frame was at sof (its time is worked
// out only when the chip keeps edge times). Called with c.mu held.
func (c *Chip) raiseIRQ(sof time.Time, n int) {
	if c.timeEdges.Load() {
		at := sof.Add(c.wireTime(n))
		c.edgeAt.Store(max(int64(at.Sub(c.edgeBase)), 1))
	}
	select {
	case c.irq <- struct{}{}:
	default:
	}
}

func (c *Chip) wakeTransmitter() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Register returns the 64-bit value of the register at off, as the chip
// sees it (no SPI transaction, no tearing). For tests and reports.
func (c *Chip) Register(off uint16) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.regs.Get(off)
}

// Stats is a snapshot of the model's own accounting: what the registers
// do not show.
type Stats struct {
	ProtocolErrors       uint64                       // rejected SPI transactions, all kinds
	ProtocolErrorsByKind map[ProtocolErrorKind]uint64 // non-zero kinds only
	ReadOnlyWrites       uint64                       // SPI writes to read-only registers
	UnmappedWrites       uint64                       // SPI writes to unmapped offsets
	HostFIFO             fifo.Stats
	RxFrameFIFO          fifo.Stats
	RxMetaFIFO           fifo.Stats
	Transmitting         bool
}

// Stats returns the model's counters and FIFO occupancies.
func (c *Chip) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		ProtocolErrorsByKind: map[ProtocolErrorKind]uint64{},
		HostFIFO:             c.host.Stats(),
		RxFrameFIFO:          c.rxFrames.Stats(),
		RxMetaFIFO:           c.rxMeta.Stats(),
		Transmitting:         c.transmitting(),
	}
	for k, n := range c.errs {
		if n > 0 {
			s.ProtocolErrorsByKind[ProtocolErrorKind(k)] = n
			s.ProtocolErrors += n
		}
	}
	s.ReadOnlyWrites, s.UnmappedWrites = c.regs.IgnoredWrites()
	return s
}
