package fault

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// serve starts ServeControl on a fresh Unix socket and returns its path
// and a stop function that waits for the server.
func serve(t *testing.T, inj *Injector) (string, func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fault.sock")
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, ln, inj) }()
	return path, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	}
}

// TestControlRoundTrip: add by spec and by flag, list, counts, remove,
// clear, through the client; the socket is 0600 and goes away on stop.
func TestControlRoundTrip(t *testing.T) {
	defer goleak.VerifyNone(t)
	inj := New(1, time.Now(), nil)
	defer inj.Close()
	path, stop := serve(t, inj)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	ctx := context.Background()
	do := func(req Request) Response {
		t.Helper()
		resp, err := Control(ctx, path, req)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		return resp
	}
	spec := mustSpec(t, "spi.timeout-before@a:count=2")
	r1 := do(Request{Op: "add", Spec: &spec})
	r2 := do(Request{Op: "add", Flag: "irq.lost@b:p=0.5"})
	if r1.ID != 1 || r2.ID != 2 {
		t.Errorf("ids %d, %d", r1.ID, r2.ID)
	}
	list := do(Request{Op: "list"}).Faults
	if len(list) != 2 || list[0].Spec != spec || list[1].Flag != "irq.lost@b:p=0.5" {
		t.Errorf("list %+v", list)
	}
	h := inj.SPI("a")
	for range 3 {
		h.Decide(8, 0x02)
	}
	if c := do(Request{Op: "counts"}).Counts; c["spi.timeout-before@a"] != 2 || len(c) != 1 {
		t.Errorf("counts %v", c)
	}
	if l := do(Request{Op: "list"}).Faults; l[0].Injected != 2 {
		t.Errorf("injected %d, want 2", l[0].Injected)
	}
	do(Request{Op: "remove", ID: 1})
	if l := do(Request{Op: "list"}).Faults; len(l) != 1 || l[0].ID != 2 {
		t.Errorf("after remove: %+v", l)
	}
	do(Request{Op: "clear"})
	if l := do(Request{Op: "list"}).Faults; len(l) != 0 {
		t.Errorf("after clear: %+v", l)
	}
	// Errors come back as errors with the server's message.
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Op: "remove", ID: 7}, "fault: no fault with id 7"},
		{Request{Op: "add", Flag: "spi.melt"}, `unknown kind "melt"`},
		{Request{Op: "add"}, "add needs spec or flag"},
		{Request{Op: "add", Spec: &spec, Flag: "irq.lost"}, "not both"},
		{Request{Op: "add", Spec: &Spec{Layer: "cable", Kind: "unplug", Count: 1}}, "count: not taken"},
		{Request{Op: "explode"}, `unknown op "explode"`},
	} {
		resp, err := Control(ctx, "unix:"+path, tc.req)
		if err == nil || resp.OK || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %+v, %v; want an error containing %q", tc.req, resp, err, tc.want)
		}
	}
	stop()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after stop: %v", err)
	}
	if _, err := Control(ctx, path, Request{Op: "list"}); err == nil {
		t.Error("Control to a stopped server succeeded")
	}
}

// TestControlBadRequests: on one raw connection, malformed, unknown-field
// and over-long lines get error responses and the connection keeps
// serving.
func TestControlBadRequests(t *testing.T) {
	defer goleak.VerifyNone(t)
	inj := New(1, time.Now(), nil)
	defer inj.Close()
	path, stop := serve(t, inj)
	defer stop()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	ask := func(line string) Response {
		t.Helper()
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		out, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var resp Response
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("response %q: %v", out, err)
		}
		return resp
	}
	for _, tc := range []struct{ line, want string }{
		{"not json", "bad request"},
		{`{"op":"list","colour":1}`, `unknown field "colour"`},
		{`{"op":"add","spec":{"layer":"spi","kind":"flip","start":"x"}}`, "invalid duration"},
		{`{"op":"list"} {"op":"clear"}`, "trailing data"},
		{`{"op":"add","flag":"` + strings.Repeat("x", MaxControlLine) + `"}`, "longer than"},
	} {
		if resp := ask(tc.line); resp.OK || !strings.Contains(resp.Error, tc.want) {
			t.Errorf("%.40q: %+v, want error containing %q", tc.line, resp, tc.want)
		}
	}
	if _, err := c.Write([]byte("\n\n")); err != nil { // blank lines are skipped
		t.Fatal(err)
	}
	if resp := ask(`{"op":"add","flag":"cable.loss:p=0.1"}`); !resp.OK || resp.ID != 1 {
		t.Errorf("valid request after bad ones: %+v", resp)
	}
}

// TestListenUnixStale: a stale socket file is replaced; a live one is
// refused.
func TestListenUnixStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path); err == nil {
		t.Error("second listener on a live socket accepted")
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // leaves a stale socket file
	ln2, err := ListenUnix(path)
	if err != nil {
		t.Fatalf("replacing a stale socket: %v", err)
	}
	ln2.Close()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path); err == nil {
		t.Error("a regular file at the socket path was replaced")
	}
}

// TestControlTCP: the client also speaks TCP, and ServeControl stops on
// cancel with a client connected.
func TestControlTCP(t *testing.T) {
	defer goleak.VerifyNone(t)
	inj := New(1, time.Now(), nil)
	defer inj.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, ln, inj) }()
	if resp, err := Control(context.Background(), ln.Addr().String(), Request{Op: "counts"}); err != nil || !resp.OK {
		t.Fatalf("%+v, %v", resp, err)
	}
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeControl did not stop with a connection open")
	}
}
