package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge/socket"
)

// serve runs tsnsim chip serve with args and returns its status, stdout
// and stderr.
func serve(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	status := run(append([]string{"chip", "serve"}, args...), &out, &errOut)
	return status, out.String(), errOut.String()
}

// TestChipServeSocketDir: the server creates its socket directory with
// mode 0700; an existing one that another user owns, that is group- or
// world-writable, or that is a symbolic link is refused with a message
// saying why, on stderr, before any socket is made.
func TestChipServeSocketDir(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "fresh", "sockets")
	if status, _, errOut := serve(t, "--socket-dir", fresh, "--duration", "100ms"); status != 0 {
		t.Fatalf("fresh directory: status %d\n%s", status, errOut)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created socket directory: %v, %v; want mode 0700", fi.Mode(), err)
	}

	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ dir, want string }{
		{open, "has mode 0777: group- or world-writable"},
		{link, "is a symbolic link"},
	}
	if os.Geteuid() == 0 {
		foreign := filepath.Join(base, "foreign")
		if err := os.Mkdir(foreign, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(foreign, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ dir, want string }{foreign, "belongs to uid 4242, not to this user"})
	} else {
		t.Log("not root: the foreign-owner case is skipped")
	}
	for _, c := range cases {
		status, out, errOut := serve(t, "--socket-dir", c.dir, "--duration", "100ms")
		if status != exitFail || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "FAIL: ") || strings.Contains(out, "FAIL") {
			t.Errorf("--socket-dir %s: status %d, stdout %q, stderr %q; want a failure on stderr saying %q", c.dir, status, out, errOut, c.want)
		}
		if _, err := os.Lstat(filepath.Join(c.dir, "a.sock")); err == nil {
			t.Errorf("--socket-dir %s: a socket was made in a refused directory", c.dir)
		}
	}
}

// TestChipServeAddressChecks: an empty --socket-dir, a socket path over
// the sun_path limit and an abstract socket without --allow-abstract are
// usage errors, and nothing is created for them.
func TestChipServeAddressChecks(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--socket-dir", ""}, "--socket-dir is empty"},
		{[]string{"--socket-dir", long}, "over the 107-byte limit"},
		{[]string{"--listen", "a=unix:" + filepath.Join(long, "a.sock")}, "over the 107-byte limit"},
		{[]string{"--listen", "a=unix:@tsnsim-i12-test"}, "pass --allow-abstract"},
		{[]string{"--idle-timeout", "0"}, "--idle-timeout must be positive"},
	} {
		status, _, errOut := serve(t, c.args...)
		if status != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: status %d, stderr %q; want a usage error saying %q", c.args, status, errOut, c.want)
		}
	}
	if _, err := os.Stat(long); err == nil {
		t.Error("the directory of a refused long path was created")
	}
	if status, _, errOut := run2(t, "run", "--takeover"); status != exitUsage || !strings.Contains(errOut, "--takeover needs --attach") {
		t.Errorf("run --takeover alone: status %d, %q", status, errOut)
	}
}

// run2 runs tsnsim with args.
func run2(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	status := run(args, &out, &errOut)
	return status, out.String(), errOut.String()
}

// TestChipServeAbstractAndTCP: with --allow-abstract an abstract socket is
// served, with a warning that any local user can reach it; with tcp::0
// the lines the server prints show the port it bound, not 0.
func TestChipServeAbstractAndTCP(t *testing.T) {
	status, out, errOut := serve(t, "--allow-abstract", "--listen", "a=unix:@tsnsim-i12-test-a", "--listen", "b=unix:@tsnsim-i12-test-b", "--duration", "100ms")
	if status != 0 || !strings.Contains(errOut, "any local user can connect") || !strings.Contains(out, "--attach unix:@tsnsim-i12-test-a") {
		t.Errorf("abstract: status %d\n%s\n%s", status, out, errOut)
	}
	status, out, errOut = serve(t, "--allow-tcp", "--listen", "a=tcp::0", "--listen", "b=tcp::0", "--duration", "100ms")
	ready := regexp.MustCompile(`ready; attach with: tsnsim run --attach tcp:127\.0\.0\.1:(\d+) --attach tcp:127\.0\.0\.1:(\d+)\n`).FindStringSubmatch(out)
	if status != 0 || ready == nil || ready[1] == "0" || ready[2] == "0" {
		t.Errorf("tcp::0: status %d, want a ready line with the bound ports\n%s\n%s", status, out, errOut)
	}
}

// TestChipServeOneDriver: with a driver holding chip a (a client that
// enabled it and stays connected), tsnsim run --attach is refused with an
// error naming it, tsnsim regs works alongside, and run --attach
// --takeover replaces it and passes.
func TestChipServeOneDriver(t *testing.T) {
	dir := t.TempDir()
	var sout, serr bytes.Buffer
	done := make(chan int)
	go func() {
		done <- run([]string{"chip", "serve", "--socket-dir", dir, "--duration", "8s"}, &sout, &serr)
	}()
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	waitFor(t, a, b)
	holder, err := socket.Dial(context.Background(), "unix:"+a, socket.ClientConfig{Label: "the holder", BackoffMin: time.Hour, BackoffMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	tx := proto.RegWrite(regs.TSNSystemControl+4, 1)
	if err := holder.Transfer(context.Background(), tx, make([]byte, len(tx))); err != nil {
		t.Fatal(err)
	}
	attach := []string{"run", "--backend", "frames", "--frames", "50", "--attach", "unix:" + a, "--attach", "unix:" + b}
	status, out, errOut := run2(t, attach...)
	if status == 0 || !strings.Contains(out+errOut, `chip a is driven by "the holder"`) || !strings.Contains(out+errOut, "--takeover") {
		t.Errorf("second driver: status %d, want a refusal naming the holder\n%s\n%s", status, out, errOut)
	}
	if status, out, errOut := run2(t, "regs", "--attach", "unix:"+a, "read", "TSN_SYSTEM_CONTROL"); status != 0 {
		t.Errorf("regs alongside the driver: status %d\n%s\n%s", status, out, errOut)
	}
	status, out, errOut = run2(t, append(attach, "--takeover")...)
	if status != 0 || !strings.Contains(out, "\nCLEAN") {
		t.Errorf("run --takeover: status %d\n%s\n%s", status, out, errOut)
	}
	if status := <-done; status != 0 {
		t.Fatalf("chip serve: status %d\n%s\n%s", status, sout.String(), serr.String())
	}
}

// waitFor waits until the files exist.
func waitFor(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat(p); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never appeared", p)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestDefaultSocketDir: the default lives under $XDG_RUNTIME_DIR when it
// is set, else in the temporary directory with the user's id.
func TestDefaultSocketDir(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	if got := defaultSocketDir(); got != "/run/user/4242/tsnsim" {
		t.Errorf("with XDG_RUNTIME_DIR: %q", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got, want := defaultSocketDir(), filepath.Join(os.TempDir(), "tsnsim-"+strconv.Itoa(os.Getuid())); got != want {
		t.Errorf("without XDG_RUNTIME_DIR: %q, want %q", got, want)
	}
}
