package integration

import (
	"errors"
	"sync"

	"tsnsim/chip/proto"
)

// basePipe is the baseline of BenchmarkOneWay: the emulator's one-way
// path A->B with the model taken out. It has the same goroutines,
// connected the same way, and copies a frame where the emulator does,
// but decodes nothing, keeps no registers, computes no FCS and applies no
// timing:
//
//	caller --TX ring + kick--> worker A --host FIFO + kick--> transmitter
//	  --buffered channel--> cable --RX FIFO + IRQ edge--> worker B -> receive
//
// Copies: the TX write buffer built by Transmit (header, metadata, frame,
// FCS space), the chip's host FIFO entry, and the buffer of the RX frame
// read, of which the receiver gets the frame part. Allocations: as the
// driver, the TX write buffers are reused once worker A has written them
// (a free list under the ring's lock); the host FIFO entry and the RX
// buffer (owned by the receiver) are allocated per frame.
type basePipe struct {
	receive func([]byte) bool

	// caller -> worker A: the driver's TX ring.
	ringMu sync.Mutex
	free   [][]byte // TX write buffers to reuse
	ring   [][]byte
	head   int
	queued int
	full   bool          // queue stopped
	kickA  chan struct{} // wakes worker A
	wake   chan struct{} // ring has room again

	// worker A -> transmitter: chip A's host FIFO.
	hostMu sync.Mutex
	host   queue
	kickT  chan struct{}

	// transmitter -> cable.
	wire chan []byte

	// cable -> worker B: chip B's RX FIFO and interrupt line.
	rxMu sync.Mutex
	rx   queue
	irq  chan struct{}

	stop chan struct{}
	wg   sync.WaitGroup
}

var errBaseBusy = errors.New("baseline: TX ring full")

func newBasePipe(ringSize int, receive func([]byte) bool) *basePipe {
	p := &basePipe{
		receive: receive,
		ring:    make([][]byte, ringSize),
		kickA:   make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		kickT:   make(chan struct{}, 1),
		wire:    make(chan []byte, 1024), // cable.DefaultQueue
		irq:     make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	p.wg.Go(p.workerA)
	p.wg.Go(p.transmitter)
	p.wg.Go(p.cable)
	p.wg.Go(p.workerB)
	return p
}

func (p *basePipe) close() {
	close(p.stop)
	p.wg.Wait()
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// transmit is driver.Transmit: build the TX write (copy 1), queue it.
func (p *basePipe) transmit(frame []byte) error {
	p.ringMu.Lock()
	if p.queued == len(p.ring) {
		p.full = true
		p.ringMu.Unlock()
		return errBaseBusy
	}
	n := max(len(frame), proto.MinFrameLen)
	var mosi []byte
	if k := len(p.free); k > 0 {
		mosi, p.free = p.free[k-1], p.free[:k-1]
	} else {
		mosi = make([]byte, 0, proto.TxWriteHeader+proto.MaxWireLen)
	}
	mosi = mosi[:proto.TxWriteHeader+n+proto.FCSLen]
	clear(mosi[proto.TxWriteHeader+copy(mosi[proto.TxWriteHeader:], frame):])
	p.ring[(p.head+p.queued)%len(p.ring)] = mosi
	p.queued++
	p.ringMu.Unlock()
	kick(p.kickA)
	return nil
}

// workerA is driver A's SPI worker: take a TX write off the ring and
// "transfer" it into chip A's host FIFO (copy 2).
func (p *basePipe) workerA() {
	for {
		p.ringMu.Lock()
		var mosi []byte
		if p.queued > 0 {
			mosi = p.ring[p.head]
			p.ring[p.head] = nil
			p.head = (p.head + 1) % len(p.ring)
			p.queued--
			if p.full {
				p.full = false
				kick(p.wake)
			}
		}
		p.ringMu.Unlock()
		if mosi == nil {
			select {
			case <-p.kickA:
				continue
			case <-p.stop:
				return
			}
		}
		e := append([]byte(nil), mosi[proto.TxWriteHeader:]...)
		p.ringMu.Lock()
		if len(p.free) < len(p.ring) {
			p.free = append(p.free, mosi)
		}
		p.ringMu.Unlock()
		p.hostMu.Lock()
		p.host.push(e)
		p.hostMu.Unlock()
		kick(p.kickT)
	}
}

// transmitter is chip A's transmitter: host FIFO onto the wire.
func (p *basePipe) transmitter() {
	for {
		p.hostMu.Lock()
		f, ok := p.host.pop()
		p.hostMu.Unlock()
		if !ok {
			select {
			case <-p.kickT:
				continue
			case <-p.stop:
				return
			}
		}
		select {
		case p.wire <- f:
		case <-p.stop:
			return
		}
	}
}

// cable is the A->B cable direction: wire into chip B's RX FIFO, IRQ edge
// when it becomes non-empty.
func (p *basePipe) cable() {
	for {
		select {
		case f := <-p.wire:
			p.rxMu.Lock()
			p.rx.push(f)
			edge := p.rx.len() == 1
			p.rxMu.Unlock()
			if edge {
				kick(p.irq)
			}
		case <-p.stop:
			return
		}
	}
}

// workerB is driver B's SPI worker: drain the RX FIFO (copy 3), strip the
// FCS, hand the frame up.
func (p *basePipe) workerB() {
	for {
		p.rxMu.Lock()
		f, ok := p.rx.pop()
		p.rxMu.Unlock()
		if !ok {
			select {
			case <-p.irq:
				continue
			case <-p.stop:
				return
			}
		}
		miso := make([]byte, proto.ReadDataStart+len(f))
		copy(miso[proto.ReadDataStart:], f)
		p.receive(miso[proto.ReadDataStart : len(miso)-proto.FCSLen])
	}
}

// queue is a minimal unbounded FIFO of frames.
type queue struct {
	items [][]byte
	head  int
}

func (q *queue) len() int { return len(q.items) - q.head }

func (q *queue) push(f []byte) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 64 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, f)
}

func (q *queue) pop() ([]byte, bool) {
	if q.head == len(q.items) {
		return nil, false
	}
	f := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	return f, true
}
