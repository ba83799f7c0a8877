package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// TestNodeBadFlags: the one-node flags are refused where they would do
// nothing or could not work, with a message naming the flag.
func TestNodeBadFlags(t *testing.T) {
	const a = "unix:/nonexistent/a.sock"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--serve"}, "for one node"},
		{[]string{"run", "--node-addr", "10.1.0.1/24"}, "for one node"},
		{[]string{"run", "--attach", a, "--attach", a, "--peer-addr", "10.0.0.2"}, "for one node"},
		{[]string{"run", "--attach", a, "--backend", "frames"}, "not frames"},
		{[]string{"run", "--attach", a, "--backend", "tap", "--serve"}, "--serve is for the netstack backend"},
		{[]string{"run", "--attach", a, "--duration", "1s"}, "--duration needs --serve"},
		{[]string{"run", "--attach", a, "--serve", "--duration", "-1s"}, "must not be negative"},
		{[]string{"run", "--attach", a, "--node-addr", "10.1.0.1"}, "ADDRESS/PREFIXLEN"},
		{[]string{"run", "--attach", a, "--node-addr", "10.1.0.1/32"}, "unicast host address on a subnet"},
		{[]string{"run", "--attach", a, "--node-addr", "224.0.0.1/4"}, "unicast"},
		{[]string{"run", "--attach", a, "--peer-addr", "10.0.1.2"}, "not on a subnet of the node (10.0.0.0/24, fd00::/64)"},
		{[]string{"run", "--attach", a, "--peer-addr", "10.0.0.1"}, "own address"},
		{[]string{"run", "--attach", a, "--peer-addr", "bogus"}, "--peer-addr \"bogus\""},
		{[]string{"run", "--attach", a, "--node-addr", "192.168.7.1/24"}, "not on a subnet of the node (192.168.7.0/24)"},
		{[]string{"run", "--backend", "tap", "--tap-prefix", "a/b"}, "'/'"},
		{[]string{"run", "--backend", "tap", "--tap-prefix", "a b"}, "whitespace"},
		{[]string{"run", "--backend", "tap", "--tap-prefix", "a:"}, "':'"},
	} {
		var out, errOut bytes.Buffer
		if status := run(c.args, &out, &errOut); status != exitUsage {
			t.Errorf("%q: status %d, want %d\n%s%s", c.args, status, exitUsage, out.String(), errOut.String())
		}
		if !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%q: error %q lacks %q", c.args, errOut.String(), c.want)
		}
	}
}

// TestNodeAddrDefaults: node a is 10.0.0.1/24 and fd00::1/64 facing
// 10.0.0.2, node b the other way round; flags replace them.
func TestNodeAddrDefaults(t *testing.T) {
	for _, c := range []struct {
		args        []string
		local, peer string
	}{
		{[]string{"--attach", "unix:x"}, "10.0.0.1/24 fd00::1/64", "10.0.0.2"},
		{[]string{"--attach", "unix:x", "--node", "b"}, "10.0.0.2/24 fd00::2/64", "10.0.0.1"},
		{[]string{"--attach", "unix:x", "--node-addr", "192.168.7.1/24", "--peer-addr", "192.168.7.9", "--peer-addr", "192.168.7.10"},
			"192.168.7.1/24", "192.168.7.9 192.168.7.10"},
	} {
		var o runOptions
		fs := o.flags()
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if err := o.validate(); err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		var local, peer []string
		for _, p := range o.local {
			local = append(local, p.String())
		}
		for _, p := range o.peers {
			peer = append(peer, p.String())
		}
		if strings.Join(local, " ") != c.local || strings.Join(peer, " ") != c.peer {
			t.Errorf("%q: node %v peer %v, want %s and %s", c.args, local, peer, c.local, c.peer)
		}
	}
	if !hasV6([]netip.Prefix{netip.MustParsePrefix("fd00::1/64")}) || hasV6([]netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}) {
		t.Error("hasV6")
	}
}

// TestOneNodeNoPeer: a node whose cable end has no peer says what to
// check instead of a bare ARP timeout, and fails.
func TestOneNodeNoPeer(t *testing.T) {
	dir := t.TempDir()
	srv := startTsnsim(t, "ready", "chip", "serve", "--node", "a", "--listen", "a=unix:"+dir+"/a.sock",
		"--cable-end", "stream-listen:unix:"+dir+"/cable.sock")
	var out, errOut bytes.Buffer
	status := run([]string{"run", "--attach", "unix:" + dir + "/a.sock", "--node", "a"}, &out, &errOut)
	if status != exitFail || !strings.Contains(out.String(), "Is the far end of the cable connected") {
		t.Errorf("status %d:\n%s\n%s", status, out.String(), errOut.String())
	}
	if _, err := srv.stop(); err != nil {
		t.Errorf("chip server: %v", err)
	}
}
