package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// child is a tsnsim command running in a child process (the test binary,
// see TestMain), so it can be sent signals.
type child struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer // read only after wait
	stderr lockedBuffer
	done   chan struct{}
	err    error
}

// lockedBuffer is a bytes.Buffer safe to read while the child writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitStderr waits until the child's stderr contains s.
func (c *child) waitStderr(t *testing.T, s string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(c.stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("stderr lacks %q after %v:\n%s", s, limit, c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0]), done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), "TSNSIM_MAIN_ARGS="+strings.Join(args, " "))
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// wait waits for the child to exit and returns its exit status.
func (c *child) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(limit):
		c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("%v: still running after %v\nstdout:\n%s\nstderr:\n%s", c.cmd.Env[len(c.cmd.Env)-1], limit, c.stdout.String(), c.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	if c.err != nil {
		t.Fatal(c.err)
	}
	return 0
}

// waitForFile waits until path exists.
func waitForFile(t *testing.T, path string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not exist after %v", path, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkVerdict checks that the report's last line is the verdict that
// status says, and that nothing is unaccounted.
func checkVerdict(t *testing.T, report string, status int) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(report, "\n"), "\n")
	last := lines[len(lines)-1]
	switch {
	case status == 0 && last == "CLEAN":
	case status == 1 && strings.HasPrefix(last, "LOSS: "):
	default:
		t.Errorf("status %d with verdict %q; want CLEAN/0 or LOSS/1:\n%s", status, last, report)
	}
}

// checkTrace checks that tsnsim trace reads the trace file: it ends at a
// line boundary and every line parses.
func checkTrace(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Errorf("trace file of %d bytes does not end at a line boundary", len(data))
	}
	var out, errOut bytes.Buffer
	if status := run([]string{"trace", path}, &out, &errOut); status != 0 {
		t.Errorf("tsnsim trace: status %d: %s", status, errOut.String())
	}
}

// TestRunStopsGracefullyOnSignal sends SIGINT (and SIGTERM) to a running
// tsnsim run, in-process chips and attached to a chip server: it stops
// the traffic and the drivers, drains, audits, prints the full report
// ending in its verdict, and leaves a trace file tsnsim trace reads.
func TestRunStopsGracefullyOnSignal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sig    syscall.Signal
		attach bool
		args   []string
	}{
		{"frames-SIGINT", syscall.SIGINT, false, []string{"--backend", "frames", "--frames", "100000000"}},
		{"netstack-SIGTERM", syscall.SIGTERM, false, []string{"--ping-count", "60000", "--ping-interval", "1ms"}},
		{"attached-frames-SIGTERM", syscall.SIGTERM, true, []string{"--backend", "frames", "--frames", "100000000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			trace := filepath.Join(dir, "spi.jsonl")
			args := append([]string{"run", "--spi-trace", trace}, tc.args...)
			var server *child
			if tc.attach {
				sockDir := filepath.Join(dir, "sock")
				server = startChild(t, "chip", "serve", "--socket-dir", sockDir)
				waitForFile(t, filepath.Join(sockDir, "b.sock"), 30*time.Second)
				args = append(args, "--attach", "unix:"+filepath.Join(sockDir, "a.sock"), "--attach", "unix:"+filepath.Join(sockDir, "b.sock"))
			}
			c := startChild(t, args...)
			waitForFile(t, trace, 30*time.Second)
			time.Sleep(time.Second) // traffic flows
			if err := c.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			status := c.wait(t, 60*time.Second)
			report := c.stdout.String()
			checkVerdict(t, report, status)
			for _, want := range []string{"interrupted by " + tc.sig.String() + ": stopped gracefully", "audit a->b:", "audit b->a:", "RX:", "spi trace: "} {
				if !strings.Contains(report, want) {
					t.Errorf("report lacks %q:\n%s\nstderr:\n%s", want, report, c.stderr.String())
				}
			}
			checkTrace(t, trace)
			if server != nil {
				server.cmd.Process.Signal(syscall.SIGTERM)
				if status := server.wait(t, 30*time.Second); status != 0 {
					t.Errorf("chip serve: status %d\n%s\n%s", status, server.stdout.String(), server.stderr.String())
				}
			}
		})
	}
}

// TestRunSecondSignalExitsAtOnce: a second SIGINT during the graceful
// stop exits at once with 130, and the trace file still ends at a line
// boundary.
func TestRunSecondSignalExitsAtOnce(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "spi.jsonl")
	// A long idle timeout keeps the graceful stop waiting: frames lost to
	// the FIFO never arrive.
	c := startChild(t, "run", "--backend", "frames", "--frames", "100000000", "--spi-clock", "0",
		"--rx-meta-fifo", "1", "--idle-timeout", "1h", "--spi-trace", trace)
	waitForFile(t, trace, 30*time.Second)
	time.Sleep(time.Second)
	c.cmd.Process.Signal(syscall.SIGINT)
	// Two signals of one kind that are both pending merge into one (a
	// starved process may not have taken the first yet): send the second
	// once tsnsim said it took the first.
	c.waitStderr(t, "stopping", 30*time.Second)
	c.cmd.Process.Signal(syscall.SIGINT)
	if status := c.wait(t, 30*time.Second); status != 130 {
		t.Errorf("status %d, want 130\n%s\n%s", status, c.stdout.String(), c.stderr.String())
	}
	if !strings.Contains(c.stderr.String(), "exiting now") {
		t.Errorf("stderr lacks the second signal's message:\n%s", c.stderr.String())
	}
	checkTrace(t, trace)
}

// TestAttachedRunStallEndsWithReport: the chip server stops answering
// (SIGSTOP) in the middle of an attached run; the run does not hang: after
// --stall-timeout it stops, prints its report with the stall as the
// reason and exits 1.
func TestAttachedRunStallEndsWithReport(t *testing.T) {
	dir := t.TempDir()
	sockDir := filepath.Join(dir, "sock")
	server := startChild(t, "chip", "serve", "--socket-dir", sockDir)
	waitForFile(t, filepath.Join(sockDir, "b.sock"), 30*time.Second)
	trace := filepath.Join(dir, "spi.jsonl")
	c := startChild(t, "run", "--backend", "frames", "--frames", "100000000", "--stall-timeout", "2s", "--spi-trace", trace,
		"--attach", "unix:"+filepath.Join(sockDir, "a.sock"), "--attach", "unix:"+filepath.Join(sockDir, "b.sock"))
	waitForFile(t, trace, 30*time.Second)
	time.Sleep(time.Second)
	if err := server.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.cmd.Process.Signal(syscall.SIGCONT) })
	status := c.wait(t, 2*time.Minute)
	report := c.stdout.String()
	if status != 1 || !strings.Contains(report, "FAIL: stalled: driver ") {
		t.Errorf("status %d, want 1 and a stall failure:\n%s\nstderr:\n%s", status, report, c.stderr.String())
	}
	lines := strings.Split(strings.TrimRight(report, "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "LOSS: ") || !strings.Contains(last, "stalled") {
		t.Errorf("verdict %q", last)
	}
	checkTrace(t, trace)
}
