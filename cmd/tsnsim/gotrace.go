package main

import (
	"fmt"
	"os"
	"runtime/trace"
	"sync"
)

// goTrace is the Go execution trace of a run or a chip server
// (--go-trace): which goroutine ran on which processor and thread, and
// when, with each SPI bus wait's lateness as a log event
// (spibridge.WaitLogCategory). It is for finding what delayed a transfer
// in real time: tsnsim trace FILE says why the late waits were late, go
// tool trace FILE shows everything.
type goTrace struct {
	file *os.File
	once sync.Once
	err  error
}

// startGoTrace creates path and starts the Go execution tracer into it.
func startGoTrace(path string) (*goTrace, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("go trace: %w", err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("go trace: %w", err)
	}
	return &goTrace{file: f}, nil
}

// stop stops the tracer (which writes what it holds) and closes the
// file; later calls return the first call's result.
func (g *goTrace) stop() error {
	g.once.Do(func() {
		trace.Stop()
		if err := g.file.Close(); err != nil {
			g.err = fmt.Errorf("go trace: %w", err)
		}
	})
	return g.err
}
