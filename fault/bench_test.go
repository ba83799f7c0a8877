package fault

import (
	"context"
	"testing"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/spibridge"
)

type nopDev struct{ irq chan struct{} }

func (d *nopDev) Transact(mosi, miso []byte) error { return nil }
func (d *nopDev) IRQ() <-chan struct{}             { return d.irq }

// BenchmarkTransfer measures an unthrottled register read on the bus:
// without a fault source, with the injector's source and no SPI fault,
// and with three SPI faults that rarely fire.
func BenchmarkTransfer(b *testing.B) {
	for _, tc := range []struct {
		name   string
		faults []string
	}{{"no-source", nil}, {"idle-injector", []string{}}, {"three-faults", []string{
		"spi.timeout-before:p=0.000001", "spi.latency:latency=1ns,p=0.000001", "spi.flip:p=0.000001"}}} {
		b.Run(tc.name, func(b *testing.B) {
			bus := spibridge.NewInProcess(&nopDev{irq: make(chan struct{})}, spibridge.Timing{}, nil)
			defer bus.Close()
			inj := New(1, time.Now(), nil)
			defer inj.Close()
			if tc.faults != nil {
				bus.SetFaults(inj.SPI("a"))
				for _, f := range tc.faults {
					mustAdd(b, inj, f)
				}
			}
			tx, rx := proto.RegRead(0x0288), make([]byte, 8)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := bus.Transfer(ctx, tx, rx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCableFrame measures the cable hook's decision per frame with
// a loss fault of small probability.
func BenchmarkCableFrame(b *testing.B) {
	inj := New(1, time.Now(), nil)
	defer inj.Close()
	mustAdd(b, inj, "cable.loss:p=0.001")
	h := inj.Cable("a")
	b.ReportAllocs()
	for b.Loop() {
		h.Frame(64)
	}
}
