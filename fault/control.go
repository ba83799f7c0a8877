package fault

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// The control protocol: JSON lines. Each request is one line, each
// response one line, on a connection that stays open until the client
// closes it.
//
//	{"op":"add","spec":{"layer":"spi","kind":"latency","latency":"1ms"}}  -> {"ok":true,"id":3}
//	{"op":"add","flag":"spi.timeout-before@a:p=0.1"}                       -> {"ok":true,"id":4}
//	{"op":"remove","id":3}                                                 -> {"ok":true}
//	{"op":"clear"}                                                         -> {"ok":true}
//	{"op":"list"}                                                          -> {"ok":true,"faults":[...]}
//	{"op":"counts"}                                                        -> {"ok":true,"counts":{"spi.timeout-before@a":2}}
//
// A bad request gets {"ok":false,"error":"..."} and the connection stays.
type Request struct {
	Op   string `json:"op"`             // add, remove, clear, list, counts
	Spec *Spec  `json:"spec,omitempty"` // add: the fault, or
	Flag string `json:"flag,omitempty"` // add: the fault in the flag syntax
	ID   int    `json:"id,omitempty"`   // remove
}

// Response answers one Request.
type Response struct {
	OK     bool              `json:"ok"`
	Error  string            `json:"error,omitempty"`
	ID     int               `json:"id,omitempty"`     // add
	Faults []Entry           `json:"faults,omitempty"` // list
	Counts map[string]uint64 `json:"counts,omitempty"` // counts
}

// Limits of the control protocol.
const (
	MaxControlLine = 64 << 10        // bytes per request or response line
	ControlTimeout = 5 * time.Second // writing a response; a client's whole exchange by default
)

// Handle executes one request against the injector.
func (inj *Injector) Handle(req Request) Response {
	fail := func(err error) Response { return Response{Error: err.Error()} }
	switch req.Op {
	case "add":
		var s Spec
		switch {
		case req.Spec != nil && req.Flag != "":
			return fail(errors.New("fault: control: add takes spec or flag, not both"))
		case req.Spec != nil:
			s = *req.Spec
		case req.Flag != "":
			var err error
			if s, err = ParseSpec(req.Flag); err != nil {
				return fail(err)
			}
		default:
			return fail(errors.New("fault: control: add needs spec or flag"))
		}
		id, err := inj.Add(s)
		if err != nil {
			return fail(err)
		}
		return Response{OK: true, ID: id}
	case "remove":
		if err := inj.Remove(req.ID); err != nil {
			return fail(err)
		}
		return Response{OK: true}
	case "clear":
		inj.Clear()
		return Response{OK: true}
	case "list":
		return Response{OK: true, Faults: inj.List()}
	case "counts":
		return Response{OK: true, Counts: inj.Counts()}
	}
	return fail(fmt.Errorf("fault: control: unknown op %q (add, remove, clear, list, counts)", req.Op))
}

// ServeControl serves the control protocol on ln until ctx is done, then
// closes ln and every connection, waits for their handlers and returns
// nil. An accept error ends it early with that error.
func ServeControl(ctx context.Context, ln net.Listener, inj *Injector) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	inj.log.Debug("control server started", zap.Stringer("addr", ln.Addr()))
	defer inj.log.Debug("control server stopped")
	for {
		c, err := ln.Accept()
		if err != nil {
			done := ctx.Err() != nil
			cancel()
			wg.Wait()
			if done {
				return nil
			}
			return fmt.Errorf("fault: control: accept: %w", err)
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			inj.serveConn(c)
		})
	}
}

// serveConn answers requests on c until it closes or fails.
func (inj *Injector) serveConn(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, tooLong, err := readLine(r, MaxControlLine)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				inj.log.Debug("control connection failed", zap.Error(err))
			}
			return
		}
		var resp Response
		switch {
		case tooLong:
			resp.Error = fmt.Sprintf("fault: control: request longer than %d bytes", MaxControlLine)
		case len(strings.TrimSpace(string(line))) == 0:
			continue
		default:
			var req Request
			if err := strictDecode(line, &req); err != nil {
				resp.Error = "fault: control: bad request: " + err.Error()
			} else {
				resp = inj.Handle(req)
			}
		}
		out, err := json.Marshal(resp)
		if err != nil {
			out, _ = json.Marshal(Response{Error: "fault: control: " + err.Error()})
		}
		c.SetWriteDeadline(time.Now().Add(ControlTimeout))
		if _, err := c.Write(append(out, '\n')); err != nil {
			inj.log.Debug("control connection failed", zap.Error(err))
			return
		}
	}
}

// readLine reads one '\n'-terminated line of at most max bytes (the
// newline excluded). A longer line is consumed to its end and reported
// as tooLong. A last line without a newline counts as a line.
func readLine(r *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > max+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && (len(line) > 0 || tooLong):
			return line, tooLong, nil
		case err != nil:
			return nil, false, err
		}
		return line, tooLong, nil
	}
}

// RemoteError is an error the running tsnsim answered a control request
// with; its text is the server's, unchanged.
type RemoteError struct{ Msg string }

// Error implements error.
func (e *RemoteError) Error() string { return e.Msg }

// Control sends one request to the control server at addr and returns
// its response: addr is "unix:PATH", a path containing '/', or a TCP
// "host:port". Without a deadline in ctx the exchange is bounded by
// ControlTimeout. A response with ok false is returned with an error
// carrying its message.
func Control(ctx context.Context, addr string, req Request) (Response, error) {
	network, address := "tcp", addr
	if rest, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", rest
	} else if strings.ContainsRune(addr, '/') {
		network = "unix"
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ControlTimeout)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return Response{}, fmt.Errorf("fault: control: %w", err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	out, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("fault: control: %w", err)
	}
	if _, err := c.Write(append(out, '\n')); err != nil {
		return Response{}, fmt.Errorf("fault: control: send: %w", err)
	}
	line, tooLong, err := readLine(bufio.NewReader(c), MaxControlLine)
	switch {
	case err != nil:
		return Response{}, fmt.Errorf("fault: control: receive: %w", err)
	case tooLong:
		return Response{}, fmt.Errorf("fault: control: response longer than %d bytes", MaxControlLine)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("fault: control: bad response: %w", err)
	}
	if !resp.OK {
		return resp, &RemoteError{Msg: resp.Error}
	}
	return resp, nil
}

// ListenUnix listens on a Unix socket at path with file mode 0600 (only
// the owner can connect). A stale socket left by a dead process is
// replaced; a live one is an error (EADDRINUSE). Closing the listener
// removes the file.
func ListenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if errors.Is(err, syscall.EADDRINUSE) && staleSocket(path) {
		if rerr := os.Remove(path); rerr != nil {
			return nil, fmt.Errorf("fault: control: remove stale socket: %w", rerr)
		}
		ln, err = net.Listen("unix", path)
	}
	if err != nil {
		return nil, fmt.Errorf("fault: control: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("fault: control: %w", err)
	}
	return ln, nil
}

// staleSocket reports whether path is a socket nobody listens on.
func staleSocket(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
