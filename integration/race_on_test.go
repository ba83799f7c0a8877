//go:build race

package integration

// raceEnabled: the race detector randomises the scheduler's run queues.
const raceEnabled = true
