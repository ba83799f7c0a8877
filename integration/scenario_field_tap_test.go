package integration

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"tsnsim/driver"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// The field failures of chip.md section 6 with real tools over TAP, in
// real time: each asserts only what holds on a busy machine (the failure
// shows with the field behaviour, not without it; every frame is
// accounted for). Root only, like the other TAP tests.

// newFieldTAPPair is newTAPPair with a driver configuration (the field
// driver's errors are expected, so none is logged).
func newFieldTAPPair(t *testing.T, dcfg driver.Config) *tapPair {
	t.Helper()
	return startTAPPair(t, "tsnf", topology.Config{SPI: spibridge.DefaultTiming(), Driver: dcfg}, zap.ErrorLevel+1)
}

// fieldTAPPing pings both ways at once (ping -c count -i interval -s
// size) and returns the replies each side got.
func fieldTAPPing(t *testing.T, p *tapPair, count int, interval string, size int) [2]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got [2]int
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			peer := tapAddrs[1-i][0].Addr().String()
			out, _ := tapInNS(ctx, p.ns[i], "ping", "-q", "-c", strconv.Itoa(count), "-i", interval, "-s", strconv.Itoa(size), "-W", "1", peer)
			r, err := parseTAPPing(out)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = r.received
		})
	}
	wg.Wait()
	return got
}

// TestFieldTAPTxSlot: ping -i 0.002 -s 200 both ways over TAP: the field
// driver's slot drops frames (pings lost, every drop counted); the
// default driver loses none.
func TestFieldTAPTxSlot(t *testing.T) {
	requireTAP(t, "ping")
	const count = 500
	for _, f := range []driver.Field{driver.FieldTxSlot, 0} {
		p := newFieldTAPPair(t, driver.Config{Field: f})
		got := fieldTAPPing(t, p, count, "0.002", 200)
		p.audit(t)
		var drops uint64
		for _, n := range p.topo.Nodes {
			drops += n.Driver.Stats().TxSlotDrops
		}
		t.Logf("field %v: replies %v of %d each way, TX slot drops %d", f, got, count, drops)
		switch {
		case f != 0 && (drops == 0 || got[0]+got[1] == 2*count):
			t.Errorf("field tx-slot: want pings lost and TX slot drops, got replies %v, drops %d", got, drops)
		case f == 0 && (drops != 0 || got != [2]int{count, count}):
			t.Errorf("default: want every reply and no drop, got replies %v, drops %d", got, drops)
		}
	}
}

// TestFieldTAPXmitClock: arping every 50 ms both ways over TAP: the field
// driver reports BUG: scheduling while atomic, transfers time out and
// ARP requests go unanswered; the default shows none of it.
func TestFieldTAPXmitClock(t *testing.T) {
	requireTAP(t, "arping")
	habets := tapArpingHabets(t)
	const count = 40
	for _, f := range []driver.Field{driver.FieldXmitClock, 0} {
		p := newFieldTAPPair(t, driver.Config{Field: f})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var answered [2]int
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				peer := tapAddrs[1-i][0].Addr().String()
				args := []string{"arping", "-c", strconv.Itoa(count)}
				if habets {
					args = append(args, "-W", "0.05", "-i", p.ifs[i], peer)
				} else {
					args = append(args, "-i", "0.05", "-w", "10", "-I", p.ifs[i], peer)
				}
				out, _ := tapInNS(ctx, p.ns[i], args...)
				_, received, err := parseTAPArping(out)
				if err != nil {
					t.Error(err)
				}
				answered[i] = received
			})
		}
		wg.Wait()
		cancel()
		p.audit(t)
		var bugs, lost uint64
		for _, n := range p.topo.Nodes {
			s := n.Driver.Stats()
			bugs += s.AtomicSleepBugs
			lost += s.LostCompletions
		}
		t.Logf("field %v: answered %v of %d each way, BUGs %d, timeouts (-110) %d", f, answered, count, bugs, lost)
		switch {
		case f != 0 && (bugs == 0 || lost == 0 || answered[0]+answered[1] == 2*count):
			t.Errorf("field xmit-clock: want BUGs, -110s and unanswered requests")
		case f == 0 && (bugs != 0 || lost != 0 || answered != [2]int{count, count}):
			t.Errorf("default: want every request answered, no BUG, no -110")
		}
	}
}

// TestFieldTAPLockOrder: SYSCOUNT reads every millisecond while both
// sides ping at 2 ms intervals: with the field lock order the watchdog
// reports the deadlock; without, the pings all come back.
func TestFieldTAPLockOrder(t *testing.T) {
	requireTAP(t, "ping")
	const count = 200
	for _, f := range []driver.Field{driver.FieldLockOrder, 0} {
		p := newFieldTAPPair(t, driver.Config{Field: f, ClockReads: time.Millisecond})
		reports := make(chan string, 2)
		ctx, cancel := context.WithCancel(context.Background())
		for _, n := range p.topo.Nodes {
			go func() {
				select {
				case r := <-n.Driver.Deadlock():
					reports <- r
					p.stop(t) // as tsnsim run does: bring the interfaces down
				case <-ctx.Done():
				}
			}()
		}
		got := fieldTAPPing(t, p, count, "0.002", 56)
		cancel()
		p.audit(t)
		var report string
		select {
		case report = <-reports:
		default:
		}
		t.Logf("field %v: replies %v, watchdog %q", f, got, report)
		switch {
		case f != 0 && !strings.Contains(report, "waits for the TX-queue lock held by SPI worker"):
			t.Errorf("field lock-order: no deadlock reported")
		case f == 0 && (report != "" || got != [2]int{count, count}):
			t.Errorf("default: want every reply and no deadlock")
		}
	}
}

// TestFieldTAPFCS: tshark on the receiving TAP sees each echo request 4
// bytes longer than sent with the field driver (its FCS), and exactly as
// sent without.
func TestFieldTAPFCS(t *testing.T) {
	requireTAP(t, "ping", "tshark")
	for _, f := range []driver.Field{driver.FieldFCS, 0} {
		p := newFieldTAPPair(t, driver.Config{Field: f})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		capture := make(chan string, 1)
		go func() {
			out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", p.ns[1], "tshark", "-i", p.ifs[1], "-c", "1", "-a", "duration:20",
				"-f", "icmp[icmptype] == icmp-echo", "-T", "fields", "-e", "frame.len").Output()
			capture <- strings.TrimSpace(string(out))
		}()
		var out string
		for range 40 { // ping until tshark has seen a request
			tapInNS(ctx, p.ns[0], "ping", "-c", "1", "-s", "100", "-W", "1", tapAddrs[1][0].Addr().String()) //nolint:errcheck // tshark's capture is the result
			select {
			case out = <-capture:
			case <-time.After(500 * time.Millisecond):
				continue
			}
			break
		}
		cancel()
		p.audit(t)
		want := "142" // 14 + 20 + 8 + 100
		if f != 0 {
			want = "146"
		}
		t.Logf("field %v: tshark frame.len %q", f, out)
		if out != want {
			t.Errorf("field %v: tshark saw a %q-byte echo request, want %s", f, out, want)
		}
	}
}
