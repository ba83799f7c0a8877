//go:build ignore

// Command init is the whole userland of the minimal QEMU guest that
// scripts/qemu-peer.sh builds: it runs as PID 1 from the initramfs, loads
// the virtio-net modules, gives the guest NIC its address and tests the
// emulated node on the far end of the cable (docs/cable-sockets.md, "A
// QEMU guest NIC as the far end"). It prints one line per step on the
// console (ttyS0), PASS or FAIL for each test, and powers off.
//
// Kernel command line (all optional):
//
//	peer.mode=test   run the tests once, then power off (default)
//	peer.mode=serve  run the tests, then stay up serving; rerun the tests
//	                 whenever 10.0.0.1 answers again after going silent
//	peer.mode=idle   only serve: no tests
//	peer.addr=10.0.0.2/24  the guest's address
//	peer.peer=10.0.0.1     the emulated node's address
//	peer.wait=120s   how long to wait for the node to answer the first ping
//	peer.bytes=1048576     bytes for each TCP test
//
// In every mode the guest serves TCP echo (7), discard (9) and source
// (19, chargen, RFC 864) and UDP echo (7), and the kernel answers ARP and
// ping. It is built by scripts/qemu-peer.sh (CGO_ENABLED=0, static); the
// build tag keeps it out of go build/vet/test ./... .
package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var start = time.Now()

func logf(format string, a ...any) {
	fmt.Printf("peer [%8.3f] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
}

type config struct {
	mode  string
	addr  netip.Prefix
	peer  netip.Addr
	wait  time.Duration
	bytes int
}

func main() {
	mounts()
	cfg := config{mode: "test", addr: netip.MustParsePrefix("10.0.0.2/24"), peer: netip.MustParseAddr("10.0.0.1"),
		wait: 120 * time.Second, bytes: 1 << 20}
	if err := parseCmdline(&cfg); err != nil {
		logf("FAIL cmdline: %v", err)
	}
	logf("guest up: mode=%s addr=%v peer=%v bytes=%d", cfg.mode, cfg.addr, cfg.peer, cfg.bytes)
	if err := loadModules("/lib/modules"); err != nil {
		logf("FAIL modules: %v", err)
		powerOff()
	}
	link, err := setupNet(cfg.addr)
	if err != nil {
		logf("FAIL net: %v", err)
		powerOff()
	}
	go watchCarrier(link)
	if err := serve(cfg.addr.Addr()); err != nil {
		logf("FAIL serve: %v", err)
		powerOff()
	}
	switch cfg.mode {
	case "test":
		tests(cfg, cfg.wait)
		powerOff()
	case "serve":
		tests(cfg, cfg.wait)
		watchPeer(cfg)
	default: // idle
		select {}
	}
}

func mounts() {
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			logf("mount %s: %v", m.dst, err)
		}
	}
}

func parseCmdline(cfg *config) error {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	logf("cmdline: %s", strings.TrimSpace(string(b)))
	for _, f := range strings.Fields(string(b)) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || !strings.HasPrefix(k, "peer.") {
			continue
		}
		switch k {
		case "peer.mode":
			cfg.mode = v
		case "peer.addr":
			if cfg.addr, err = netip.ParsePrefix(v); err != nil {
				return err
			}
		case "peer.peer":
			if cfg.peer, err = netip.ParseAddr(v); err != nil {
				return err
			}
		case "peer.wait":
			if cfg.wait, err = time.ParseDuration(v); err != nil {
				return err
			}
		case "peer.bytes":
			if cfg.bytes, err = strconv.Atoi(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadModules loads the modules named in dir/order, one file name a line,
// in that order (dependencies first).
func loadModules(dir string) error {
	order, err := os.ReadFile(filepath.Join(dir, "order"))
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(order)) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("finit_module %s: %w", name, err)
		}
	}
	logf("modules loaded: %s", strings.Join(strings.Fields(string(order)), " "))
	return nil
}

// setupNet brings lo up and gives the first other link addr.
func setupNet(addr netip.Prefix) (netlink.Link, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return nil, err
	}
	var link netlink.Link
	for deadline := time.Now().Add(20 * time.Second); link == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, errors.New("no network interface appeared in 20s")
		}
		links, err := netlink.LinkList()
		if err != nil {
			return nil, err
		}
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				link = l
				break
			}
		}
	}
	a, err := netlink.ParseAddr(addr.String())
	if err != nil {
		return nil, err
	}
	if err := netlink.AddrAdd(link, a); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, err
	}
	logf("%s (%v, mtu %d) up with %v", link.Attrs().Name, link.Attrs().HardwareAddr, link.Attrs().MTU, addr)
	return link, nil
}

// watchCarrier prints the NIC's carrier at the start and at every change.
func watchCarrier(link netlink.Link) {
	path := "/sys/class/net/" + link.Attrs().Name + "/carrier"
	last := ""
	for {
		b, _ := os.ReadFile(path)
		if c := strings.TrimSpace(string(b)); c != last {
			logf("carrier %s=%s", link.Attrs().Name, c)
			last = c
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// serve starts TCP echo (7), discard (9), source (19) and UDP echo (7).
func serve(addr netip.Addr) error {
	for _, s := range []struct {
		port int
		name string
		fn   func(net.Conn) (int64, int64, error)
	}{{7, "echo", func(c net.Conn) (int64, int64, error) {
		n, err := io.Copy(c, c)
		return n, n, err
	}}, {9, "discard", func(c net.Conn) (int64, int64, error) {
		n, err := io.Copy(io.Discard, c)
		return n, 0, err
	}}, {19, "source", func(c net.Conn) (int64, int64, error) {
		n, err := io.Copy(c, &chargen{})
		return 0, n, err
	}}} {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", s.port))
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					t := time.Now()
					in, out, err := s.fn(c)
					c.Close()
					d := time.Since(t)
					logf("served tcp %s for %v: %d bytes in, %d out in %v (%.2f Mbit/s), end: %v", s.name, c.RemoteAddr(),
						in, out, d.Round(time.Millisecond), float64(in+out)*8/d.Seconds()/1e6, err)
				}()
			}
		}()
	}
	pc, err := net.ListenPacket("udp", ":7")
	if err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	logf("serving on %v: tcp echo 7, discard 9, source 19 (chargen); udp echo 7", addr)
	return nil
}

// chargen is the RFC 864 stream: lines of 72 printable characters and CR
// LF, each starting one character further along the 95 printable ones.
type chargen struct{ off int }

var chargenPeriod = func() []byte {
	var b []byte
	for line := range 95 {
		for i := range 72 {
			b = append(b, byte(' '+(line+i)%95))
		}
		b = append(b, '\r', '\n')
	}
	return b
}()

func (g *chargen) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], chargenPeriod[g.off:])
		n += k
		g.off = (g.off + k) % len(chargenPeriod)
	}
	return n, nil
}

// tests runs every test against cfg.peer, waiting up to wait for the
// first ping answer, and prints PASS or FAIL for each and a summary.
func tests(cfg config, wait time.Duration) bool {
	t0 := time.Now()
	peer := cfg.peer.String()
	pass, fail := 0, 0
	result := func(name string, err error, detail string) {
		if err != nil {
			fail++
			logf("FAIL %s: %v", name, err)
			return
		}
		pass++
		logf("PASS %s: %s", name, detail)
	}
	rtt, err := pingWait(cfg.peer, wait)
	result("first-ping", err, fmt.Sprintf("%s answered after %v (rtt %v)", peer, time.Since(t0).Round(time.Millisecond), rtt))
	if err != nil {
		logf("SUMMARY %d passed, %d failed", pass, fail)
		return false
	}
	var rtts []string
	var perr error
	for range 5 {
		d, err := ping(cfg.peer, time.Second)
		if err != nil {
			perr = err
			break
		}
		rtts = append(rtts, d.Round(10*time.Microsecond).String())
		time.Sleep(200 * time.Millisecond)
	}
	result("ping", perr, "5 echo replies, rtt "+strings.Join(rtts, " "))
	d, err := tcpEcho(peer+":7", cfg.bytes)
	result("tcp-echo", err, rate(cfg.bytes, d, "sent and echoed back, byte for byte"))
	d, err = tcpSource(peer+":19", cfg.bytes)
	result("tcp-source", err, rate(cfg.bytes, d, "read from chargen, RFC 864 pattern checked"))
	d, err = tcpDiscard(peer+":9", cfg.bytes)
	result("tcp-discard", err, rate(cfg.bytes, d, "sent, peer closed after our FIN"))
	err = udpEcho(peer + ":7")
	result("udp-echo", err, "1000-byte datagram echoed")
	logf("SUMMARY %d passed, %d failed in %v", pass, fail, time.Since(t0).Round(time.Millisecond))
	return fail == 0
}

func rate(n int, d time.Duration, what string) string {
	return fmt.Sprintf("%d bytes %s in %v (%.2f Mbit/s)", n, what, d.Round(time.Millisecond), float64(n)*8/d.Seconds()/1e6)
}

// watchPeer pings the peer every second, reports when it stops and
// starts answering, and reruns the tests when it answers again.
func watchPeer(cfg config) {
	up, since := true, time.Now()
	for {
		_, err := ping(cfg.peer, time.Second)
		switch {
		case err != nil && up:
			logf("peer %v stopped answering ping (%v)", cfg.peer, err)
			up, since = false, time.Now()
		case err == nil && !up:
			logf("peer %v answers ping again after %v; rerunning the tests", cfg.peer, time.Since(since).Round(time.Millisecond))
			tests(cfg, 10*time.Second)
			up = true
		}
		time.Sleep(time.Second)
	}
}

var pingSeq uint16

// ping sends one ICMP echo request to peer and waits for its reply.
func ping(peer netip.Addr, timeout time.Duration) (time.Duration, error) {
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	pingSeq++
	id, seq := uint16(os.Getpid()&0xffff|0x4000), pingSeq
	msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}
	msg = append(msg, []byte("tsnsim qemu-peer ping payload...")...)
	cs := checksum(msg)
	msg[2], msg[3] = byte(cs>>8), byte(cs)
	t := time.Now()
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: peer.AsSlice()}); err != nil {
		return 0, err
	}
	c.SetReadDeadline(t.Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return 0, err
		}
		if from.String() == peer.String() && n >= 8 && buf[0] == 0 &&
			uint16(buf[4])<<8|uint16(buf[5]) == id && uint16(buf[6])<<8|uint16(buf[7]) == seq {
			if !bytes.Equal(buf[8:n], msg[8:]) {
				return 0, errors.New("echo reply payload differs")
			}
			return time.Since(t), nil
		}
	}
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// pingWait pings every half second until the peer answers or wait passes.
func pingWait(peer netip.Addr, wait time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(wait)
	for {
		d, err := ping(peer, 500*time.Millisecond)
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no echo reply from %v in %v: %v", peer, wait, err)
		}
	}
}

func dial(addr string) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	return c.(*net.TCPConn), nil
}

// tcpEcho sends n random bytes to the echo service while reading them
// back, and compares.
func tcpEcho(addr string, n int) (time.Duration, error) {
	data := make([]byte, n)
	rand.Read(data)
	t := time.Now()
	c, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		_, werr = c.Write(data)
		if werr == nil {
			werr = c.CloseWrite()
		}
	})
	got, rerr := io.ReadAll(c)
	wg.Wait()
	d := time.Since(t)
	if werr != nil {
		return d, fmt.Errorf("write: %w", werr)
	}
	if rerr != nil {
		return d, fmt.Errorf("read after %d bytes: %w", len(got), rerr)
	}
	if len(got) != n {
		return d, fmt.Errorf("echoed %d bytes, sent %d", len(got), n)
	}
	for i := range got {
		if got[i] != data[i] {
			return d, fmt.Errorf("echo differs at byte %d", i)
		}
	}
	return d, nil
}

// tcpSource reads n bytes from the chargen source and checks them.
func tcpSource(addr string, n int) (time.Duration, error) {
	t := time.Now()
	c, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	got := make([]byte, n)
	k, err := io.ReadFull(c, got)
	d := time.Since(t)
	if err != nil {
		return d, fmt.Errorf("read %d of %d bytes: %w", k, n, err)
	}
	want := make([]byte, n)
	(&chargen{}).Read(want)
	if i := firstDiff(got, want); i >= 0 {
		return d, fmt.Errorf("byte %d is %q, RFC 864 has %q", i, got[i], want[i])
	}
	return d, nil
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// tcpDiscard sends n bytes to the discard service, closes its side and
// waits for the service to close after reading everything.
func tcpDiscard(addr string, n int) (time.Duration, error) {
	data := make([]byte, n)
	rand.Read(data)
	t := time.Now()
	c, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		return time.Since(t), err
	}
	if err := c.CloseWrite(); err != nil {
		return time.Since(t), err
	}
	k, err := io.Copy(io.Discard, c)
	d := time.Since(t)
	if err != nil {
		return d, fmt.Errorf("waiting for the close: %w", err)
	}
	if k != 0 {
		return d, fmt.Errorf("discard sent %d bytes", k)
	}
	return d, nil
}

func udpEcho(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := make([]byte, 1000)
	rand.Read(msg)
	buf := make([]byte, 2000)
	for try := 0; try < 3; try++ {
		c.Write(msg)
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			if !bytes.Equal(buf[:n], msg) {
				return errors.New("echoed datagram differs")
			}
			return nil
		}
	}
	return errors.New("no echo in 3 tries")
}

func powerOff() {
	logf("powering off")
	unix.Sync()
	time.Sleep(100 * time.Millisecond)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
