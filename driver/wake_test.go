package driver

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/spibridge"
)

// markRecorder is the driver's transport with the bus's EventMarker in
// front, recording what the worker marks.
type markRecorder struct {
	spibridge.Transport
	bus *spibridge.InProcess

	mu    sync.Mutex
	woken []wokeCall
	marks []time.Time
}

type wokeCall struct{ event, woke time.Time }

func (m *markRecorder) Timed() bool         { return m.bus.Timed() }
func (m *markRecorder) LastEdge() time.Time { return m.bus.LastEdge() }

func (m *markRecorder) MarkEvent(at time.Time) {
	m.mu.Lock()
	m.marks = append(m.marks, at)
	m.mu.Unlock()
	m.bus.MarkEvent(at)
}

func (m *markRecorder) Woke(event, woke time.Time) {
	m.mu.Lock()
	m.woken = append(m.woken, wokeCall{event, woke})
	m.mu.Unlock()
	m.bus.Woke(event, woke)
}

func (m *markRecorder) lastMark() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.marks) == 0 {
		return time.Time{}
	}
	return m.marks[len(m.marks)-1]
}

func (m *markRecorder) take() []wokeCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.woken
	m.woken = nil
	return w
}

// TestWokeForEvents: with ModelWakeups, an idle worker that wakes for an
// interrupt edge tells the bus it woke for the edge the chip raised, at
// the edge's time in the model (the end of the frame on the line, which a
// real-time run may see late); one that wakes for a frame to send, for
// the time the frame was handed over. In virtual time it wakes at once,
// so the bus has nothing to take back. Without ModelWakeups it only
// marks the events, when it sees them.
func TestWokeForEvents(t *testing.T) {
	t.Run("ModelWakeups", func(t *testing.T) { testWokeForEvents(t, true) })
	t.Run("default", func(t *testing.T) { testWokeForEvents(t, false) })
}

func testWokeForEvents(t *testing.T, model bool) {
	synctest.Test(t, func(t *testing.T) {
		var m *markRecorder
		r := newWrappedRig(t, Config{ModelWakeups: model}, false, func(f *faulty) spibridge.Transport {
			m = &markRecorder{Transport: f, bus: f.inner.(*spibridge.InProcess)}
			return m
		})
		r.open(t)
		time.Sleep(5 * time.Millisecond)
		m.take()

		// An edge the chip saw 30 µs after the frame ended on the line.
		const late = 30 * time.Microsecond
		wire := proto.AppendFCS(testFrame(1, 100))
		edge := time.Now().Add(-late)
		r.chip.ReceivePHY(wire, edge.Add(-time.Duration(len(wire))*80*time.Nanosecond)) // 100 Mbit/s
		time.Sleep(time.Millisecond)
		if len(r.received()) != 1 {
			t.Fatalf("%d frames received, want 1", len(r.received()))
		}
		now := edge.Add(late)
		if got := m.take(); !model && (len(got) != 0 || !m.lastMark().Equal(now)) {
			t.Errorf("default: woken %v, last mark %v before now; want no wake-ups, the edge marked when seen", got, now.Sub(m.lastMark()))
		} else if model && (len(got) != 1 || !got[0].event.Equal(edge) || !got[0].woke.Equal(now)) {
			t.Errorf("woken for the edge: %v, want one call for the edge %v before, woken now", got, late)
		}

		time.Sleep(5 * time.Millisecond)
		offered := time.Now()
		if err := r.d.Transmit(testFrame(2, 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		if got := m.take(); !model && (len(got) != 0 || !m.lastMark().Equal(offered)) {
			t.Errorf("default: woken %v, last mark %v; want no wake-ups, the hand-over marked", got, m.lastMark())
		} else if model && (len(got) != 1 || !got[0].event.Equal(offered) || !got[0].woke.Equal(offered)) {
			t.Errorf("woken for a frame to send: %v, want one call at the hand-over", got)
		}
	})
}
