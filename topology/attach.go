package topology

import (
	"io"

	"tsnsim/driver"
	"tsnsim/spibridge"
)

// Attach builds the driver side of a topology whose chips run in another
// process (`tsnsim chip serve`): node i's driver core drives
// transports[i] (normally a socket client) and closers[i], if not nil, is
// closed after the driver has stopped. The nodes have no Chip, Bus or
// Cable; Audit and WriteReport read the chips' registers over SPI.
func Attach(cfg Config, transports [2]spibridge.Transport, closers [2]io.Closer, receive [2]func([]byte) bool) *Topology {
	cfg = cfg.WithDefaults()
	t := &Topology{log: cfg.Logger.Named("topology")}
	for i := range t.Nodes {
		dc := cfg.Driver
		dc.Name = cfg.Names[i]
		dc.Receive = receive[i]
		dc.Logger = cfg.Logger
		t.Nodes[i] = &Node{Name: cfg.Names[i], Transport: transports[i], closer: closers[i],
			Driver: driver.New(transports[i], dc)}
	}
	return t
}
