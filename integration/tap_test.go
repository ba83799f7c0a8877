package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"tsnsim/host/tap"
	"tsnsim/spibridge"
	"tsnsim/topology"
)

// The TAP tests run real tools (ping, arping, iperf3) over the emulated
// chips: each node's driver is attached to a TAP device in a network
// namespace of its own. They need root and /dev/net/tun and skip without
// them; CI runs as root with the tools installed (apt: iproute2,
// iputils-ping, arping, iperf3).

// tapAddrs are the addresses of node 0 and node 1.
var tapAddrs = [2][]netip.Prefix{
	{netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("fd77::1/64")},
	{netip.MustParsePrefix("10.77.0.2/24"), netip.MustParsePrefix("fd77::2/64")},
}

// requireTAP skips the test unless it runs as root with /dev/net/tun and
// the given tools in PATH.
func requireTAP(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("TAP tests need root (CAP_NET_ADMIN): run `sudo go test ./integration -run TAP`")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("TAP tests need /dev/net/tun (modprobe tun): %v", err)
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("TAP tests need %s in PATH (apt-get install iproute2 iputils-ping arping iperf3 tshark linuxptp): %v", tool, err)
		}
	}
}

// tapPair is a topology whose two nodes are attached to TAP devices in
// two network namespaces.
type tapPair struct {
	topo      *topology.Topology
	devs      [2]*tap.Device
	ns        [2]string
	ifs       [2]string
	closeOnce sync.Once
}

// newTAPPair builds and starts the topology with SPI timing tm, creates
// the TAP devices and attaches them. Everything is removed at cleanup.
func newTAPPair(t *testing.T, tm spibridge.Timing) *tapPair {
	t.Helper()
	return startTAPPair(t, "tsnt", topology.Config{SPI: tm}, zap.WarnLevel)
}

// startTAPPair is newTAPPair with the configuration spelt out: the
// prefix of the interface and namespace names, the topology's
// configuration (its Logger is set here) and the lowest log level shown.
func startTAPPair(t *testing.T, prefix string, cfg topology.Config, level zapcore.Level) *tapPair {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(level))
	p := &tapPair{}
	prefix = fmt.Sprintf("%s%04x", prefix, rand.Uint32()&0xffff)
	for i, node := range [2]string{"a", "b"} {
		p.ifs[i] = prefix + node
		p.ns[i] = prefix + "-" + node
		dev, err := tap.New(tap.Config{
			Name:   p.ifs[i],
			MAC:    topology.NodeMAC(i),
			Addrs:  tapAddrs[i],
			Netns:  p.ns[i],
			Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		p.devs[i] = dev
		t.Cleanup(func() {
			if err := dev.Close(); err != nil {
				t.Errorf("close %s: %v", dev.Name(), err)
			}
		})
	}
	cfg.Logger = log
	p.topo = newTopology(t, cfg, [2]func([]byte) bool{p.devs[0].Receive, p.devs[1].Receive})
	if err := p.topo.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t) })
	for i, dev := range p.devs {
		if err := dev.Attach(p.topo.Nodes[i].Driver); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// stop closes the topology once; the devices stay until cleanup.
func (p *tapPair) stop(t *testing.T) {
	p.closeOnce.Do(func() { closeTopology(t, p.topo) })
}

// audit stops the topology and checks the frame accounting of both
// directions: what node i sent is delivered to node 1-i's TAP or counted.
func (p *tapPair) audit(t *testing.T) {
	t.Helper()
	p.stop(t)
	for i := range 2 {
		ds := p.devs[1-i].Stats()
		assertAccounting(t, p.topo, i, ds.Written)
		t.Logf("%s: %+v; driver %+v", p.devs[i].Name(), p.devs[i].Stats(), p.topo.Nodes[i].Driver.Stats())
	}
}

// tapInNS runs a command in namespace ns with a deadline and returns its
// combined output.
func tapInNS(ctx context.Context, ns string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var (
	tapPingLossRe = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received.*?([\d.]+)% packet loss`)
	tapPingRTTRe  = regexp.MustCompile(`= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms`)
)

// tapPingResult is what ping printed.
type tapPingResult struct {
	sent, received int
	loss           string
	rtt            string // min/avg/max/mdev ms
}

func parseTAPPing(out string) (tapPingResult, error) {
	m := tapPingLossRe.FindStringSubmatch(out)
	if m == nil {
		return tapPingResult{}, fmt.Errorf("no summary in ping output:\n%s", out)
	}
	r := tapPingResult{loss: m[3] + "%"}
	r.sent, _ = strconv.Atoi(m[1])
	r.received, _ = strconv.Atoi(m[2])
	if m := tapPingRTTRe.FindStringSubmatch(out); m != nil {
		r.rtt = strings.Join(m[1:], "/") + " ms"
	}
	return r, nil
}

// tapPingBothWays pings from each namespace to the other at once and
// requires every reply.
func tapPingBothWays(t *testing.T, p *tapPair, count int, interval string, v6 bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			peer := tapAddrs[1-i][0].Addr()
			fam := "-4"
			if v6 {
				peer, fam = tapAddrs[1-i][1].Addr(), "-6"
			}
			out, err := tapInNS(ctx, p.ns[i], "ping", fam, "-c", strconv.Itoa(count), "-i", interval, "-W", "1", peer.String())
			r, perr := parseTAPPing(out)
			if err != nil || perr != nil || r.received != count || r.loss != "0%" {
				t.Errorf("ping %s -> %v (-i %s): %v %v\n%s", p.ns[i], peer, interval, err, perr, out)
				return
			}
			t.Logf("ping %s %s -> %v -c %d -i %s: %d/%d received, %s loss, rtt min/avg/max/mdev %s",
				fam, p.ifs[i], peer, count, interval, r.received, r.sent, r.loss, r.rtt)
		})
	}
	wg.Wait()
}

var (
	// Thomas Habets' arping (Debian's arping package).
	tapHabetsRe = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)
	// iputils arping.
	tapIputilsSentRe = regexp.MustCompile(`Sent (\d+) probes`)
	tapIputilsRecvRe = regexp.MustCompile(`Received (\d+) response`)
)

// tapArpingHabets reports whether the arping in PATH is Thomas Habets'
// (interface -i, interval -W) rather than iputils' (interface -I).
func tapArpingHabets(t *testing.T) bool {
	out, _ := exec.Command("arping", "--help").CombinedOutput()
	return strings.Contains(string(out), "Habets")
}

// parseTAPArping returns the requests sent and the replies received.
func parseTAPArping(out string) (sent, received int, err error) {
	if m := tapHabetsRe.FindStringSubmatch(out); m != nil {
		sent, _ = strconv.Atoi(m[1])
		received, _ = strconv.Atoi(m[2])
		return sent, received, nil
	}
	ms, mr := tapIputilsSentRe.FindStringSubmatch(out), tapIputilsRecvRe.FindStringSubmatch(out)
	if ms == nil || mr == nil {
		return 0, 0, fmt.Errorf("no summary in arping output:\n%s", out)
	}
	sent, _ = strconv.Atoi(ms[1])
	received, _ = strconv.Atoi(mr[1])
	return sent, received, nil
}

// tapArpingBothWays ARP-pings from each namespace to the other at once and
// requires every request answered.
func tapArpingBothWays(t *testing.T, p *tapPair, count int, interval string) {
	t.Helper()
	habets := tapArpingHabets(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			peer := tapAddrs[1-i][0].Addr().String()
			args := []string{"arping", "-c", strconv.Itoa(count)}
			if habets {
				args = append(args, "-W", interval, "-i", p.ifs[i], peer)
			} else {
				args = append(args, "-i", interval, "-w", "10", "-I", p.ifs[i], peer)
			}
			out, err := tapInNS(ctx, p.ns[i], args...)
			sent, received, perr := parseTAPArping(out)
			if perr != nil || sent != count || received != count {
				t.Errorf("%s in %s: %v %v: %d sent, %d received\n%s", strings.Join(args, " "), p.ns[i], err, perr, sent, received, out)
				return
			}
			t.Logf("arping %s -> %s (interval %s s): %d/%d answered", p.ifs[i], peer, interval, received, sent)
		})
	}
	wg.Wait()
}

// TestTAPPingArping: real ping (IPv4 both ways at once, at 10 ms and
// 2 ms intervals, and IPv6) and arping between two namespaces over the
// emulated chips with the SPI timing model on: nothing lost, every frame
// accounted.
func TestTAPPingArping(t *testing.T) {
	requireTAP(t, "ping", "arping")
	p := newTAPPair(t, spibridge.DefaultTiming())
	tapPingBothWays(t, p, 50, "0.01", false)
	tapPingBothWays(t, p, 50, "0.002", false)
	tapPingBothWays(t, p, 3, "0.2", true)
	tapArpingBothWays(t, p, 20, "0.5")
	tapArpingBothWays(t, p, 20, "0.05")
	p.audit(t)
}

// tapIperfResult is the part of iperf3 -J output used here.
type tapIperfResult struct {
	End struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// tapIperf runs a one-off iperf3 server in namespace srvNS and a 3 s TCP
// client in cliNS against addr; it returns the received throughput in
// Mbit/s and the sender's retransmits.
func tapIperf(t *testing.T, srvNS, cliNS, addr string) (mbps float64, retransmits int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", srvNS, "iperf3", "-s", "-1", "--forceflush", "-B", addr)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv.Stderr = srv.Stdout
	if err := srv.Start(); err != nil {
		t.Fatalf("start iperf3 server: %v", err)
	}
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Server listening") {
				ready <- nil
				for sc.Scan() { // drain until the server exits
				}
				return
			}
		}
		ready <- errors.New("iperf3 server exited before listening")
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("iperf3 server did not start listening in 5 s")
	}
	out, err := tapInNS(ctx, cliNS, "iperf3", "-c", addr, "-t", "3", "-J")
	var r tapIperfResult
	if jerr := json.Unmarshal([]byte(out), &r); err != nil || jerr != nil || r.Error != "" {
		t.Fatalf("iperf3 client in %s -> %s: %v %v %s\n%s", cliNS, addr, err, jerr, r.Error, out)
	}
	return r.End.SumReceived.BitsPerSecond / 1e6, r.End.SumSent.Retransmits
}

// tapVethPair creates two fresh namespaces joined by a veth pair with the
// same addresses as the TAP pair, removed at cleanup.
func tapVethPair(t *testing.T) [2]string {
	t.Helper()
	prefix := fmt.Sprintf("tsnv%04x", rand.Uint32()&0xffff)
	ns := [2]string{prefix + "-a", prefix + "-b"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, n := range ns {
		run("netns", "add", n)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", n).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", n, err, out)
			}
		})
	}
	run("link", "add", "va", "netns", ns[0], "type", "veth", "peer", "name", "vb", "netns", ns[1])
	for i, ifname := range [2]string{"va", "vb"} {
		run("-n", ns[i], "link", "set", "lo", "up")
		run("-n", ns[i], "addr", "add", tapAddrs[i][0].String(), "dev", ifname)
		run("-n", ns[i], "link", "set", ifname, "up")
	}
	return ns
}

// TestTAPIperf: iperf3 TCP for 3 s each way between two namespaces over
// the emulated chips with the SPI timing model off, every frame
// accounted afterwards; and the same over a plain veth pair, the ceiling
// of this machine, for comparison.
func TestTAPIperf(t *testing.T) {
	requireTAP(t, "iperf3")
	p := newTAPPair(t, spibridge.Timing{})
	var emu [2]float64
	for i := range 2 {
		mbps, retr := tapIperf(t, p.ns[1-i], p.ns[i], tapAddrs[1-i][0].Addr().String())
		emu[i] = mbps
		t.Logf("iperf3 TCP %s -> %s over the emulated chips: %.1f Mbit/s, %d retransmits",
			p.ifs[i], p.ifs[1-i], mbps, retr)
	}
	p.audit(t)

	veth := tapVethPair(t)
	vmbps, vretr := tapIperf(t, veth[1], veth[0], tapAddrs[1][0].Addr().String())
	t.Logf("iperf3 TCP over a veth pair (ceiling): %.1f Mbit/s, %d retransmits", vmbps, vretr)
	avg := (emu[0] + emu[1]) / 2
	if vmbps > 0 {
		t.Logf("emulated/veth: %.1f / %.1f Mbit/s = %.4f (%.2f%%)", avg, vmbps, avg/vmbps, 100*avg/vmbps)
	}
	for i, m := range emu {
		if m <= 0 {
			t.Errorf("direction %d: no throughput", i)
		}
	}
}
