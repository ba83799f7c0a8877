package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tsnsim/host"
	"tsnsim/host/netstack"
	"tsnsim/workload"
)

// nodeProc is tsnsim running in a child process (the test binary, through
// TestMain's TSNSIM_MAIN_ARGS), so that it can be sent signals.
type nodeProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string
	mu     sync.Mutex
	out    []string
	stderr strings.Builder
}

// startTsnsim starts tsnsim with args and waits for a stdout line that
// starts with ready.
func startTsnsim(t *testing.T, ready string, args ...string) *nodeProc {
	t.Helper()
	c := &nodeProc{t: t, cmd: exec.Command(os.Args[0]), lines: make(chan string, 1000)}
	c.cmd.Env = append(os.Environ(), "TSNSIM_MAIN_ARGS="+strings.Join(args, " "))
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("tsnsim %s exited before %q:\n%s\n%s", args, ready, c.output(), c.stderr.String())
			}
			c.add(l)
			if strings.HasPrefix(l, ready) {
				return c
			}
		case <-timeout:
			t.Fatalf("tsnsim %s: no %q after 60s:\n%s", args, ready, c.output())
		}
	}
}

func (c *nodeProc) add(l string) {
	c.mu.Lock()
	c.out = append(c.out, l)
	c.mu.Unlock()
}

func (c *nodeProc) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.out, "\n")
}

// stop sends SIGTERM, reads the rest of the output and returns it with
// the exit error.
func (c *nodeProc) stop() (string, error) {
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
	for l := range c.lines {
		c.add(l)
	}
	err := c.cmd.Wait()
	return c.output(), err
}

// streamPeer is a plain Go program at the far end of a cable end: an
// embedded stack whose frames travel over conn in QEMU's stream framing
// (a 4-byte big-endian length, then the frame without FCS), as a QEMU
// guest's -netdev stream sends them. It is the stack's host.NIC.
type streamPeer struct {
	conn net.Conn
	st   *netstack.Stack
	mu   sync.Mutex // one frame per write
	done chan struct{}
	once sync.Once
}

func (p *streamPeer) Transmit(f []byte) error {
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(f)), uint32(len(f)))
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.conn.Write(append(buf, f...))
	return err
}
func (p *streamPeer) QueueStopped() bool    { return false }
func (p *streamPeer) Wake() <-chan struct{} { return nil }

var _ host.NIC = (*streamPeer)(nil)

// dialStreamPeer connects a peer stack with addresses addrs to the
// stream cable end listening at path (QEMU's server=off).
func dialStreamPeer(t *testing.T, path string, addrs ...string) *streamPeer {
	t.Helper()
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if conn, err = net.Dial("unix", path); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return newStreamPeer(t, conn, addrs...)
}

// listenStreamPeer listens at path for the cable end to dial in, as QEMU
// does with server=on, and returns the peer once it has.
func listenStreamPeer(t *testing.T, path string, addrs ...string) *streamPeer {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // one peer, like QEMU; a new peer listens anew
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	select {
	case c := <-accepted:
		if c == nil {
			t.Fatal("accept failed")
		}
		return newStreamPeer(t, c, addrs...)
	case <-time.After(30 * time.Second):
		l.Close()
		t.Fatalf("the cable end did not dial %s within 30s", path)
		return nil
	}
}

// newStreamPeer runs a peer stack over conn.
func newStreamPeer(t *testing.T, conn net.Conn, addrs ...string) *streamPeer {
	t.Helper()
	var prefixes []netip.Prefix
	for _, a := range addrs {
		prefixes = append(prefixes, netip.MustParsePrefix(a))
	}
	st, err := netstack.New(netstack.Config{Name: "peer", MAC: net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}, Addrs: prefixes})
	if err != nil {
		t.Fatal(err)
	}
	p := &streamPeer{conn: conn, st: st, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		r := bufio.NewReader(conn)
		var hdr [4]byte
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
			if _, err := io.ReadFull(r, f); err != nil {
				return
			}
			st.Receive(f)
		}
	}()
	if err := st.Attach(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p
}

func (p *streamPeer) close() {
	p.once.Do(func() {
		p.conn.Close()
		<-p.done
		p.st.Close()
	})
}

// serveCableEnd starts a chip server for node a whose cable ends at the
// unix stream socket cablePath, listening or (mode stream-connect)
// dialling; it returns the chip's --attach address.
func serveCableEnd(t *testing.T, mode, cablePath string) (srv *nodeProc, attach string) {
	attach = "unix:" + filepath.Join(t.TempDir(), "a.sock")
	srv = startTsnsim(t, "ready", "chip", "serve", "--node", "a", "--listen", "a="+attach,
		"--cable-end", mode+":unix:"+cablePath)
	return srv, attach
}

const bulk = 4 << 20

// TestOneNodeServe follows docs/cable-sockets.md's QEMU recipe with a
// plain Go program in QEMU's place: it listens like QEMU's server=on and
// speaks its stream framing; the chip server's cable end dials it; `tsnsim
// run --attach ADDR --node a --serve` drives the chip. The peer resolves
// the node (ARP), pings it, and moves 4 MiB through the TCP echo service,
// so 4 MiB each way at once cross the emulated chip, checked byte for
// byte; then UDP echo. Then "QEMU" restarts: the cable end redials and
// the new peer pings the node. The node reports the connection and
// passes its accounting at SIGTERM.
func TestOneNodeServe(t *testing.T) {
	cablePath := filepath.Join(t.TempDir(), "qemu.sock")
	srv, attach := serveCableEnd(t, "stream-connect", cablePath)
	peer := listenStreamPeer(t, cablePath, "10.0.0.2/24")
	node := startTsnsim(t, "ready:", "run", "--attach", attach, "--node", "a", "--serve")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodeIP := netip.MustParseAddr("10.0.0.1")
	mac, err := peer.st.ResolveLink(ctx, nodeIP)
	if err != nil || mac.String() != "02:00:00:00:00:01" {
		t.Fatalf("ARP 10.0.0.1: %v %v", mac, err)
	}
	if res := workload.Ping(peer.st, nodeIP, 10, 56, 10*time.Millisecond, 2*time.Second); res.Received != res.Sent {
		t.Errorf("ping: %v (%v)", res, res.FirstErr)
	}

	c, err := peer.st.DialTCP(ctx, netip.AddrPortFrom(nodeIP, workload.EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, bulk)
	rand.NewChaCha8([32]byte{12}).Read(data)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	elapsed := time.Since(start)
	c.Close()
	if err := <-werr; err != nil {
		t.Errorf("sending: %v", err)
	}
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("TCP echo: %d of %d bytes back identical (%v)", len(got), bulk, err)
	}
	t.Logf("4 MiB each way at once through the emulated chip in %v (%.2f Mbit/s each way)",
		elapsed.Round(time.Millisecond), float64(bulk)*8/elapsed.Seconds()/1e6)

	u, err := peer.st.DialUDP(netip.AddrPortFrom(nodeIP, workload.EchoPort))
	if err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := u.Write([]byte("tsnsim udp echo")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != "tsnsim udp echo" {
		t.Errorf("UDP echo: %q %v", buf[:n], err)
	}
	u.Close()

	// QEMU restarts: the cable end redials the new one.
	peer.close()
	os.Remove(cablePath)
	peer = listenStreamPeer(t, cablePath, "10.0.0.2/24")
	if res := workload.Ping(peer.st, nodeIP, 3, 56, 10*time.Millisecond, 2*time.Second); res.Received != res.Sent {
		t.Errorf("ping after the peer restarted: %v (%v)", res, res.FirstErr)
	}

	out, err := node.stop()
	if err != nil {
		t.Errorf("node exited with %v:\n%s\n%s", err, out, node.stderr.String())
	}
	for _, want := range []string{
		"subnets 10.0.0.0/24",
		"peer 10.0.0.2 is at 52:54:00:12:34:56",
		"tcp echo from 10.0.0.2:",
		fmt.Sprintf("%d bytes in, %d out", bulk, bulk),
		"service udp echo   : 1 datagrams",
		"\nCLEAN",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("node output lacks %q:\n%s", want, out)
		}
	}
	peer.close()
	out, err = srv.stop()
	if err != nil {
		t.Errorf("chip server exited with %v:\n%s", err, out)
	}
	if log := srv.stderr.String(); strings.Count(log, "peer connected") != 2 || !strings.Contains(log, "peer disconnected") {
		t.Errorf("chip server did not log the peer's two connections and its disconnect:\n%s", log)
	}
}

// TestOneNodeTAP drives `tsnsim run --attach ADDR --node a --backend tap
// --netns` against the same Go peer, which serves echo, discard and
// source: the Linux stack in the namespace pings it and moves 4 MiB each
// way through the emulated chip (bash's /dev/tcp, no extra tools).
func TestOneNodeTAP(t *testing.T) {
	skipUnlessTAP(t, "ip", "ping", "bash", "sha256sum")
	cablePath := filepath.Join(t.TempDir(), "cable.sock")
	srv, attach := serveCableEnd(t, "stream-listen", cablePath)
	peer := dialStreamPeer(t, cablePath, "10.0.0.2/24")
	svc, err := workload.Serve(peer.st, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	prefix := fmt.Sprintf("tsno%04d", rand.IntN(10000))
	ns := prefix + "-a"
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	node := startTsnsim(t, "ready:", "run", "--attach", attach, "--node", "a", "--backend", "tap", "--netns", "--tap-prefix", prefix)

	if o, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "5", "-i", "0.05", "-W", "2", "10.0.0.2").CombinedOutput(); err != nil {
		t.Errorf("ping: %v\n%s", err, o)
	}
	file := filepath.Join(t.TempDir(), "4m")
	data := make([]byte, bulk)
	rand.NewChaCha8([32]byte{7}).Read(data)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("ip", "netns", "exec", ns, "bash", "-c", "cat "+file+" > /dev/tcp/10.0.0.2/9").CombinedOutput(); err != nil {
		t.Errorf("to discard: %v\n%s", err, o)
	}
	o, err := exec.Command("ip", "netns", "exec", ns, "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/10.0.0.2/19; head -c %d <&3 | sha256sum", bulk)).CombinedOutput()
	want := make([]byte, bulk)
	workload.SourceReader().Read(want)
	if sum := fmt.Sprintf("%x", sha256.Sum256(want)); err != nil || !strings.HasPrefix(string(o), sum) {
		t.Errorf("from source: %v, sha256 %s want %s", err, o, sum)
	}
	waitUntil(t, func() bool { return svc.Stats()[1].BytesIn == bulk }, "4 MiB at the peer's discard service")
	// The peer stops talking before the node stops: frames that reach a
	// node whose link is already down are lost (and the verdict says so).
	svc.Close()
	waitQuiet(t, ns, ns)

	out, err := node.stop()
	if err != nil {
		t.Errorf("node exited with %v:\n%s\n%s", err, out, node.stderr.String())
	}
	if !strings.Contains(out, "\nCLEAN") || !strings.Contains(out, "in namespace "+ns) {
		t.Errorf("node output:\n%s", out)
	}
	if o, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(o), prefix) {
		t.Errorf("namespace left behind:\n%s", o)
	}
	peer.close()
	if out, err := srv.stop(); err != nil {
		t.Errorf("chip server exited with %v:\n%s", err, out)
	}
}

// waitUntil polls cond for up to 30 s (real time: processes and stacks).
// waitQuiet waits until interface ifname in namespace ns has received
// nothing for 500 ms, reading its counters as a user would (ip -s link).
func waitQuiet(t *testing.T, ns, ifname string) {
	t.Helper()
	rx := func() string {
		o, err := exec.Command("ip", "-n", ns, "-s", "-j", "link", "show", ifname).Output()
		if err != nil {
			t.Fatalf("ip -s link: %v", err)
		}
		var links []struct {
			Stats struct {
				RX struct{ Packets uint64 } `json:"rx"`
			} `json:"stats64"`
		}
		if err := json.Unmarshal(o, &links); err != nil || len(links) != 1 {
			t.Fatalf("ip -s -j link: %v\n%s", err, o)
		}
		return fmt.Sprint(links[0].Stats.RX.Packets)
	}
	last, since := rx(), time.Now()
	waitUntil(t, func() bool {
		if n := rx(); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= 500*time.Millisecond
	}, "quiet link")
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 30s", what)
		}
	}
}

// TestServeCableEndHint: a chip server for node b behind a cable end
// prints an attach hint that names --node b, and logs its cable end at
// the default verbosity.
func TestServeCableEndHint(t *testing.T) {
	dir := t.TempDir()
	var out, errOut strings.Builder
	status := run([]string{"chip", "serve", "--node", "b", "--listen", "b=unix:" + filepath.Join(dir, "b.sock"),
		"--cable-end", "stream-listen:unix:" + filepath.Join(dir, "cable.sock"), "--duration", "200ms"}, &out, &errOut)
	if status != 0 {
		t.Fatalf("status %d:\n%s\n%s", status, out.String(), errOut.String())
	}
	want := "ready; attach with: tsnsim run --attach unix:" + filepath.Join(dir, "b.sock") + " --node b"
	if !strings.Contains(out.String(), want) {
		t.Errorf("no %q in:\n%s", want, out.String())
	}
	if !strings.Contains(errOut.String(), "listening") {
		t.Errorf("the cable end's listening line is not logged by default:\n%s", errOut.String())
	}
}
