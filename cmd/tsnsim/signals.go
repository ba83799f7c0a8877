package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"tsnsim/driver"
)

// interrupted is the cause of a run's context when SIGINT or SIGTERM
// asked it to stop.
type interrupted struct{ sig os.Signal }

func (e *interrupted) Error() string { return fmt.Sprintf("interrupted by %v", e.sig) }

// stalled is the cause of a run's context when the link made no progress
// for too long.
type stalled struct {
	node    string
	queued  int
	timeout time.Duration
}

func (e *stalled) Error() string {
	return fmt.Sprintf("stalled: driver %s made no progress for %v with %d frames on its TX ring (--stall-timeout)",
		e.node, e.timeout, e.queued)
}

// signalExit is the exit status of a second signal: 128 + the signal
// number, as a shell reports a process killed by it.
func signalExit(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 128 + int(syscall.SIGINT)
}

// exit ends the process; tests replace it.
var exit = os.Exit

// osSignals turns the signal handling of tsnsim run on; tests that run
// it in a synctest bubble turn it off (os/signal's goroutines live
// outside the bubble).
var osSignals = true

// watchSignals returns a context that the first SIGINT or SIGTERM
// cancels (cause *interrupted), so the run stops gracefully: traffic
// stops, drivers stop, queues drain, the audit and the full report are
// printed. A second signal runs atExit (nil: nothing) and exits at once
// with 128 + the signal number. release stops watching.
func watchSignals(stderr io.Writer, atExit func()) (ctx context.Context, release func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	if !osSignals {
		return ctx, func() { cancel(nil) }
	}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		first := true
		for {
			select {
			case sig := <-ch:
				if first {
					first = false
					fmt.Fprintf(stderr, "tsnsim run: %v: stopping (traffic, drivers, drain, audit); a second signal exits at once\n", sig)
					cancel(&interrupted{sig: sig})
					continue
				}
				fmt.Fprintf(stderr, "tsnsim run: %v again: exiting now, without a report\n", sig)
				if atExit != nil {
					atExit()
				}
				exit(signalExit(sig))
				return
			case <-done:
				return
			}
		}
	})
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
		cancel(nil)
	}
}

// watchProgress cancels the run (cause *stalled) when a driver keeps
// frames on its TX ring and completes none of them for timeout: the chip
// behind it stopped answering, or the driver hung. An idle link (nothing
// queued) is not a stall. It samples every timeout/20 (at least 10 ms);
// stop ends it.
func watchProgress(ctx context.Context, cancel context.CancelCauseFunc, drivers []*driver.Driver, names []string,
	timeout time.Duration) (stop func()) {
	if timeout <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		period := max(timeout/20, 10*time.Millisecond)
		tick := time.NewTicker(period)
		defer tick.Stop()
		last := make([]uint64, len(drivers))
		since := make([]time.Time, len(drivers))
		now := time.Now()
		for i := range since {
			since[i] = now
		}
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				for i, d := range drivers {
					s := d.Stats()
					completed := s.TxPackets + s.TxErrors + s.TxDropped
					if completed != last[i] || s.TxQueued == 0 {
						last[i], since[i] = completed, now
						continue
					}
					if now.Sub(since[i]) >= timeout {
						cancel(&stalled{node: names[i], queued: s.TxQueued, timeout: timeout})
						return
					}
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
