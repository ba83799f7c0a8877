package main

import (
	"testing"
	"testing/synctest"
)

// inVirtualTime runs f in a synctest bubble with tsnsim's signal
// handling and precise timer off: a frames-backend run then takes virtual time, and its
// zero-loss result holds on a busy machine too.
func inVirtualTime(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	osSignals, preciseTimers = false, false
	defer func() { osSignals, preciseTimers = true, true }()
	synctest.Test(t, f)
}
