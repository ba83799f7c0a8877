//go:build linux

package tap

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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
	useOwnerDir(t)
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
	useOwnerDir(t)
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
	if err == nil || !strings.Contains(err.Error(), "namespace") || !strings.Contains(err.Error(), "exists already") ||
		!strings.Contains(err.Error(), "did not create it") {
		t.Errorf("namespace collision: got %v", err)
	}
	if exists, _ := namespaceExists(nsName); !exists {
		t.Error("existing namespace clobbered")
	}
	if _, err := netlink.LinkByName(name + "x"); err == nil {
		t.Error("TAP left behind after a failed New")
	}
}

// useOwnerDir points the owner marks at a fresh directory for one test.
func useOwnerDir(t *testing.T) {
	t.Helper()
	old := ownerDir
	ownerDir = filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() { ownerDir = old })
}

// TestTAPStaleNamespace: a namespace whose owner mark names a process
// that is gone (here: this pid with another start time, as after pid
// reuse) is removed at the next New, which then creates its own; one
// whose owner is alive is refused with its pid; a mark without a
// namespace is removed.
func TestTAPStaleNamespace(t *testing.T) {
	requireRoot(t)
	useOwnerDir(t)
	name := uniqueName(t)
	nsName := name + "-ns"
	t.Cleanup(func() { deleteNamespace(nsName) })

	// Left behind by a dead tsnsim: namespace and mark.
	ns, err := createNamespace(nsName)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(markPath(nsName), fmt.Appendf(nil, "%d 1\n", os.Getpid()), 0o644); err != nil {
		t.Fatal(err)
	}
	// A mark whose namespace was never created (killed in between).
	orphan := name + "-o"
	if err := os.WriteFile(markPath(orphan), fmt.Appendf(nil, "%d 1\n", os.Getpid()), 0o644); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	d, err := New(Config{Name: name, Netns: nsName, Logger: zap.New(core)})
	if err != nil {
		t.Fatalf("New over a stale namespace: %v", err)
	}
	if n := logs.FilterMessageSnippet("left by a tsnsim that is gone").FilterField(zap.String("netns", nsName)).Len(); n != 1 {
		t.Errorf("%d log lines about removing %s, want 1: %v", n, nsName, logs.All())
	}
	if _, err := os.Stat(markPath(orphan)); err == nil {
		t.Errorf("orphan mark %s not removed", orphan)
	}
	o, ok, err := readMark(nsName)
	if err != nil || !ok || o.pid != os.Getpid() || !o.alive() {
		t.Fatalf("mark of the new namespace: %+v %v %v", o, ok, err)
	}

	// A live owner (this process): refused, naming it.
	_, err = New(Config{Name: name + "x", Netns: nsName})
	if err == nil || !strings.Contains(err.Error(), "in use by a running tsnsim") ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("live owner: got %v", err)
	}
	if exists, _ := namespaceExists(nsName); !exists {
		t.Error("a live tsnsim's namespace was removed")
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(markPath(nsName)); err == nil {
		t.Error("Close left the owner mark")
	}
	if exists, _ := namespaceExists(nsName); exists {
		t.Error("Close left the namespace")
	}
}
