package integration

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tsnsim/spibridge"
)

// linuxptp over TAP (issue 11): ptp4l with software timestamping in the
// two namespaces, a with the better priority1. b runs free (free_running:
// it measures but never steers CLOCK_REALTIME, which the namespaces share
// with the machine) and is told its synchronization is not uncertain
// (pmc SET SYNCHRONIZATION_UNCERTAIN_NP 0), so that its servo reports
// locked and the port reaches SLAVE without touching the host clock. The
// offsets measure the software path (the two stacks, the emulated chips
// and cable), not the chip: a TAP has no hardware timestamps.

// ptp4lProc is a ptp4l running in a namespace, its output collected.
type ptp4lProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func startPtp4l(t *testing.T, ns string, args ...string) *ptp4lProc {
	t.Helper()
	p := &ptp4lProc{done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, "ptp4l"}, args...)...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends ptp4l with SIGTERM (SIGKILL after 5 s) and waits for it.
func (p *ptp4lProc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited; Wait says
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill() //nolint:errcheck // last resort
		<-p.done
	}
	p.cmd.Wait() //nolint:errcheck // ended by our signal
}

func (p *ptp4lProc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

var ptp4lOffsetRe = regexp.MustCompile(`master offset\s+(-?\d+) s(\d) freq\s+[-+]?\d+ path delay\s+(-?\d+)`)

func TestTAPPtp4l(t *testing.T) {
	requireTAP(t, "ptp4l", "pmc")
	p := newTAPPair(t, spibridge.DefaultTiming())
	dir := t.TempDir()
	// Unix sockets on paths are shared across namespaces: one each.
	udsA, udsB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	a := startPtp4l(t, p.ns[0], "-S", "-2", "-m", "-i", p.ifs[0], "--priority1", "100", "--uds_address", udsA)
	b := startPtp4l(t, p.ns[1], "-S", "-2", "-m", "-i", p.ifs[1], "--free_running", "1", "--uds_address", udsB)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for { // b's management socket appears once it started
		out, _ := tapInNS(ctx, p.ns[1], "pmc", "-u", "-s", udsB, "-b", "0", "SET SYNCHRONIZATION_UNCERTAIN_NP 0")
		if strings.Contains(out, "uncertain 0") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pmc could not set b's SYNCHRONIZATION_UNCERTAIN_NP: %s\nb:\n%s", out, strings.Join(b.output(), "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// SLAVE, then offsets with the servo locked (s2) and a path delay
	// measured (Delay_Req b->a and Delay_Resp a->b crossed too).
	const wantOffsets = 5
	var slave bool
	var offsets, delays []int64
	for ctx.Err() == nil && len(offsets) < wantOffsets {
		time.Sleep(500 * time.Millisecond)
		slave, offsets, delays = false, nil, nil
		for _, l := range b.output() {
			if strings.Contains(l, "UNCALIBRATED to SLAVE") {
				slave = true
			}
			if m := ptp4lOffsetRe.FindStringSubmatch(l); m != nil && slave && m[2] == "2" {
				off, _ := strconv.ParseInt(m[1], 10, 64)
				d, _ := strconv.ParseInt(m[3], 10, 64)
				offsets, delays = append(offsets, off), append(delays, d)
			}
		}
	}
	a.stop(t)
	b.stop(t)
	outA, outB := a.output(), b.output()
	t.Logf("ptp4l a (last lines):\n%s", lastLines(outA, 6))
	t.Logf("ptp4l b (last lines):\n%s", lastLines(outB, 10))
	if !slave || len(offsets) < wantOffsets {
		t.Fatalf("b did not reach SLAVE with %d locked offsets (slave %v, %d offsets)", wantOffsets, slave, len(offsets))
	}
	if !strings.Contains(strings.Join(outA, "\n"), "assuming the grand master role") || strings.Contains(strings.Join(outA, "\n"), "to SLAVE") {
		t.Errorf("a should be the grandmaster and never a slave")
	}
	for _, d := range delays {
		if d <= 0 {
			t.Errorf("path delay %d ns: Delay_Req/Delay_Resp did not cross", d)
		}
	}
	t.Logf("b's offsets from a (ns): %v; path delays (ns): %v", offsets, delays)
	p.audit(t)
}

func lastLines(lines []string, n int) string {
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
