//go:build linux

package tap

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requireRoot skips a test that creates interfaces unless it runs as
// root with /dev/net/tun.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to create TAP devices and namespaces")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("needs /dev/net/tun (modprobe tun): %v", err)
	}
}

func uniqueName(t *testing.T) string {
	return fmt.Sprintf("tsnu%04x", rand.Uint32()&0xffff)
}

// TestTAPNewInNetns creates a TAP in a new namespace and checks it is
// configured there, then that Close removes both and is idempotent.
func TestTAPNewInNetns(t *testing.T) {
	requireRoot(t)
	name := uniqueName(t)
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 0x01}
	d, err := New(Config{
		Name:  name,
		MAC:   mac,
		MTU:   1400,
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.9.1/24"), netip.MustParsePrefix("fd77:9::1/64")},
		Netns: name + "-ns",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("%s is still in the caller's namespace", name)
	}
	ns, err := netns.GetFromName(name + "-ns")
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a := link.Attrs()
	if a.HardwareAddr.String() != mac.String() || a.MTU != 1400 || a.Flags&net.FlagUp == 0 {
		t.Errorf("link %s: mac %v mtu %d flags %v", name, a.HardwareAddr, a.MTU, a.Flags)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ad := range addrs {
		got = append(got, ad.IPNet.String())
	}
	for _, want := range []string{"10.77.9.1/24", "fd77:9::1/64"} {
		if !strings.Contains(strings.Join(got, " "), want) {
			t.Errorf("addresses %v lack %s", got, want)
		}
	}
	if lo, err := h.LinkByName("lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo not up in the namespace: %v", err)
	}
	h.Close()
	ns.Close()

	if err := d.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if exists, _ := namespaceExists(name + "-ns"); exists {
		t.Errorf("namespace %s-ns left behind", name)
	}
	if d.Receive(make([]byte, 60)) {
		t.Error("Receive after Close reported success")
	}
	if s := d.Stats(); s.WriteErrors != 1 {
		t.Errorf("stats after a write on a closed device: %+v", s)
	}
	if err := d.Attach(nil); err == nil {
		t.Error("Attach after Close succeeded")
	}
}

// TestTAPNameCollision: New refuses an interface or namespace name that
// is taken, and leaves the existing one alone.
func TestTAPNameCollision(t *testing.T) {
	requireRoot(t)
	name := uniqueName(t)
	first, err := New(Config{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	_, err = New(Config{Name: name})
	if err == nil || !strings.Contains(err.Error(), "exists already") || !strings.Contains(err.Error(), name) {
		t.Errorf("interface collision: got %v", err)
	}
	if _, err := netlink.LinkByName(name); err != nil {
		t.Errorf("existing interface clobbered: %v", err)
	}

	nsName := name + "-ns"
	ns, err := createNamespace(nsName)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	t.Cleanup(func() { deleteNamespace(nsName) })
	_, err = New(Config{Name: name + "x", Netns: nsName})
	if err == nil || !strings.Contains(err.Error(), "namespace") || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("namespace collision: got %v", err)
	}
	if exists, _ := namespaceExists(nsName); !exists {
		t.Error("existing namespace clobbered")
	}
	if _, err := netlink.LinkByName(name + "x"); err == nil {
		t.Error("TAP left behind after a failed New")
	}
}
