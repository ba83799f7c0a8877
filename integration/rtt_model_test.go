package integration

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"tsnsim/chip"
	"tsnsim/chip/proto"
	"tsnsim/driver"
	"tsnsim/rtimer"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// echoSize is the frame of a default ping (56 bytes of ICMP payload): 98
// bytes without the FCS.
const echoSize = 98

// modelEchoRTT is the model's round trip of an echoSize frame on an idle
// link with hosts that take no time: each way, the TX write (header,
// metadata, frame and FCS), preamble and frame on the wire plus the TX
// latency and the propagation (the frame enters the RX FIFO when its
// last byte arrives), the RX metadata read and the RX frame read
// (header, turnaround byte, frame and FCS).
func modelEchoRTT(tm spibridge.Timing) time.Duration {
	fcs := echoSize + 4
	wire := time.Duration((chip.PreambleLen+fcs)*8) * time.Second / time.Duration(chip.DefaultLinkBitsPerSec)
	oneWay := tm.Duration(proto.TxWriteHeader+fcs) + wire + chip.DefaultTxLatency + 50*time.Nanosecond +
		tm.Duration(proto.RxMetaReadLen) + tm.Duration(proto.ReadDataStart+fcs)
	return 2 * oneWay
}

// echoRTTs sends n echo frames from node a, one every interval, node b
// turning each around at once in its receive path; it returns the round
// trips as node a's host sees them.
func echoRTTs(t *testing.T, cfg topology.Config, n int, interval time.Duration) []time.Duration {
	var topo *topology.Topology
	back := make(chan time.Time, n)
	receive := [2]func([]byte) bool{
		func([]byte) bool { back <- time.Now(); return true },
		func(f []byte) bool {
			reply := slices.Clone(f)
			copy(reply[0:6], f[6:12])
			copy(reply[6:12], f[0:6])
			if err := topo.Nodes[1].Driver.Transmit(reply); err != nil {
				t.Errorf("echo: %v", err)
			}
			return true
		},
	}
	topo = newTopology(t, cfg, receive)
	ctx := context.Background()
	if err := topo.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer closeTopology(t, topo)
	// The model is an idle link: let the drivers' first housekeeping (the
	// reset check and the chip counter read at the first poll tick, which
	// hold the bus for about 200 us) pass before the first echo.
	time.Sleep(driver.DefaultPollInterval + time.Millisecond)
	frame := make([]byte, echoSize)
	copy(frame, topology.NodeMAC(1))
	copy(frame[6:], topology.NodeMAC(0))
	frame[12], frame[13] = 0x88, 0xb5
	var rtts []time.Duration
	for range n {
		time.Sleep(interval)
		t0 := time.Now()
		if err := topo.Nodes[0].Driver.Transmit(slices.Clone(frame)); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-back:
			rtts = append(rtts, at.Sub(t0))
		case <-time.After(10 * time.Second): // eventual delivery, even on a busy machine
			t.Fatal("no echo within 10 s")
		}
	}
	return rtts
}

// TestModelEchoRTT: in virtual time, a frame of a default ping crosses
// the link and back in exactly the model's time, every time.
func TestModelEchoRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := spibridge.DefaultTiming()
		rtts := echoRTTs(t, topology.Config{SPI: tm}, 10, 10*time.Millisecond)
		want := modelEchoRTT(tm)
		for i, rtt := range rtts {
			if rtt != want {
				t.Errorf("echo %d: RTT %v, model %v", i, rtt, want)
			}
		}
		t.Logf("model RTT of a %d-byte frame: %v", echoSize, want)
	})
}

// TestRealTimeEchoRTT runs the same echoes in real time, through the
// precise timer with and without its polled tail (--timer-spin) and
// through Go's timers, and reports the RTTs against
// the model. The machine may be busy, so it asserts only that every echo
// came back and none came back sooner than the model allows; the figures
// are in the log (go test -v -run RealTimeEchoRTT ./integration).
func TestRealTimeEchoRTT(t *testing.T) {
	rt, err := rtimer.Start()
	if errors.Is(err, rtimer.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	spin, err := rtimer.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer spin.Close()
	spin.SetSpin(rtimer.DefaultSpin)
	tm := spibridge.DefaultTiming()
	model := modelEchoRTT(tm)
	for _, c := range []struct {
		name  string
		timer *rtimer.Service
	}{{"precise timer, polled tail", spin}, {"precise timer", rt}, {"Go timers", nil}} {
		rtts := echoRTTs(t, topology.Config{SPI: tm, Timer: c.timer}, 50, 5*time.Millisecond)
		slices.Sort(rtts)
		if c.timer != nil && rtts[0] < model-time.Microsecond {
			t.Errorf("%s: fastest echo %v, below the model's %v", c.name, rtts[0], model)
		}
		t.Logf("%s: real-time RTT of a %d-byte frame over %d echoes: min %v, p50 %v, p90 %v, max %v; model %v",
			c.name, echoSize, len(rtts), rtts[0], rtts[len(rtts)/2], rtts[len(rtts)*9/10], rtts[len(rtts)-1], model)
	}
}
