package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// TestTSNStampsOverTransports: hardware stamps over every transport, in
// real time. Stamps come from the chips' emulated times, so even here
// RX - TX stamp of each frame is the 50 ns cable delay within a tick;
// the transmit path issues no SPI transfer; every frame is accounted for.
func TestTSNStampsOverTransports(t *testing.T) {
	forEachTransport(t, func(t *testing.T, transport transportHook) {
		var mu sync.Mutex
		rx := map[uint32]driver.HWStamp{}
		var tx []driver.TxStamp
		var delivered [2]uint64
		cfg := topology.Config{
			SPI:       spibridge.DefaultTiming(),
			Transport: transport,
			Driver:    driver.Config{TSN: driver.TSNConfig{Timestamps: true}},
			DriverConfig: func(i int, c *driver.Config) {
				c.TSN.ReceiveStamped = func(f []byte, st driver.HWStamp) bool {
					mu.Lock()
					defer mu.Unlock()
					delivered[i]++
					if i == 1 && st.Valid {
						rx[binary.BigEndian.Uint32(f[14:])] = st
					}
					return true
				}
				c.TSN.TxStamped = func(s driver.TxStamp) {
					mu.Lock()
					tx = append(tx, s)
					mu.Unlock()
				}
			},
		}
		topo := newTopology(t, cfg, [2]func([]byte) bool{})
		if err := topo.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		d := topo.Nodes[0].Driver
		const n = 20
		for seq := range uint32(n) {
			f := make([]byte, 100)
			copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5})
			binary.BigEndian.PutUint32(f[14:], seq)
			if err := d.TransmitStamped(f, driver.StampRequest{Cookie: uint64(seq)}); err != nil {
				t.Fatal(err)
			}
			// One request per stamp register: wait for this one.
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				got := len(tx)
				mu.Unlock()
				if got > int(seq) || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		closeTopology(t, topo)
		mu.Lock()
		defer mu.Unlock()
		if len(tx) != n {
			t.Fatalf("%d stamp completions, want %d", len(tx), n)
		}
		for _, s := range tx {
			if s.Err != nil {
				if !errors.Is(s.Err, driver.ErrStampTimeout) {
					t.Errorf("cookie %d: %v", s.Cookie, s.Err)
				}
				continue // a timeout under load is counted, not a failure
			}
			r, ok := rx[uint32(s.Cookie)]
			if !ok {
				t.Errorf("cookie %d: not received with a stamp", s.Cookie)
				continue
			}
			if dd := r.PHC - s.Stamp.PHC; dd < 50-8 || dd > 50+8 {
				t.Errorf("cookie %d: RX - TX stamp %d ns, want 50 +- 8", s.Cookie, dd)
			}
		}
		for i := range 2 {
			if x := topo.Nodes[i].Driver.TSNStats().XmitTransfers; x != 0 {
				t.Errorf("node %d: %d SPI transfers from transmit", i, x)
			}
			assertAccounting(t, topo, i, delivered[1-i])
		}
	})
}
