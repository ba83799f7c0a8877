package socket

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"tsnsim/spibridge"
)

// Wire format of the socket bridge (docs/socket-protocol.md). Every
// message is framed as
//
//	length u32 | type u8 | body[length-1]
//
// big-endian, and its length is checked against the bounds of its type
// before any of its body is read.

// msgType is the type byte of a message.
type msgType uint8

// Message types.
const (
	msgHello    msgType = 0x01 // client -> server, first message
	msgWelcome  msgType = 0x02 // server -> client, first message
	msgTransfer msgType = 0x03 // client -> server
	msgResult   msgType = 0x04 // server -> client
	msgIRQ      msgType = 0x05 // server -> client
	msgError    msgType = 0x06 // server -> client, then the server closes
	msgIdentify msgType = 0x07 // client -> server, after a welcome with flagOwnership
)

// Layout figures.
const (
	frameHeaderLen = 5  // length u32, type u8
	helloMinLen    = 6  // magic, version: enough to answer any version
	helloLen       = 8  // version 1: magic, version, flags
	helloMaxLen    = 64 // bound for hellos of other versions
	welcomeMinLen  = 40 // version 1 without the name
	welcomeMaxLen  = welcomeMinLen + MaxName
	transferHdrLen = 4 // id
	resultHdrLen   = 5 // id, status
	errorMinLen    = 1 // code
	identifyMinLen = 9 // client id u64, flags u8
	// MaxLabel is the longest label (who the client is) an identify
	// message carries.
	MaxLabel       = 64
	identifyMaxLen = identifyMinLen + MaxLabel
	// socketMaxLength is the largest length field either side accepts:
	// a result carrying MaxTransfer bytes.
	socketMaxLength = 1 + resultHdrLen + MaxTransfer
)

// Hello flags.
const (
	flagInterrupts uint16 = 1 << 0 // client: send me IRQ; server: you will get IRQ
	flagDriver     uint16 = 1 << 1 // client: this connection belongs to a driver (a connection slot kept for drivers)
	flagOwnership  uint16 = 1 << 1 // server (welcome): one driver per chip; send an identify message
)

// Identify flags.
const (
	identifyTakeover uint8 = 1 << 0 // replace the chip's current driver
)

// Timeout modes of the welcome.
const (
	timeoutLinux uint8 = 0 // Linux 6.x spi_controller_xfer_timeout at clock_hz
	timeoutFixed uint8 = 1 // timeout_ns for every transfer
)

// Result statuses and the errno each stands for.
const (
	statusOK       uint8 = 0
	statusTimedOut uint8 = 1 // ETIMEDOUT: the bus timed out
	statusInvalid  uint8 = 2 // EINVAL: bad buffers
	statusBadF     uint8 = 3 // EBADF: the server's bus is closed
	statusBusy     uint8 = 4 // EBUSY: over the connection's in-flight bound
	statusIO       uint8 = 5 // EIO: any other failure
	statusMsgSize  uint8 = 6 // EMSGSIZE: longer than the server carries
	statusCanceled uint8 = 7 // ECANCELED: cancelled by the server (closing)
	statusHeld     uint8 = 8 // EBUSY: another client drives the chip
	numStatuses          = 9
)

var statusErrno = [numStatuses]syscall.Errno{
	statusOK:       0,
	statusTimedOut: syscall.ETIMEDOUT,
	statusInvalid:  syscall.EINVAL,
	statusBadF:     syscall.EBADF,
	statusBusy:     syscall.EBUSY,
	statusIO:       syscall.EIO,
	statusMsgSize:  syscall.EMSGSIZE,
	statusCanceled: syscall.ECANCELED,
	statusHeld:     syscall.EBUSY,
}

// statusOf maps a transport error to the status that carries it.
func statusOf(err error) uint8 {
	if err == nil {
		return statusOK
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		for s, e := range statusErrno {
			if s != int(statusOK) && e == errno {
				return uint8(s)
			}
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return statusCanceled
	}
	return statusIO
}

// msgDirection says who sends a message: the bounds of a type depend on it.
type msgDirection uint8

const (
	fromClient msgDirection = iota
	fromServer
)

// msgBodyBounds are the smallest and largest body of a message type.
type msgBodyBounds struct{ min, max int }

// msgBounds returns the body bounds of typ sent in direction dir; ok is false
// for a type that does not travel that way.
func msgBounds(dir msgDirection, typ msgType) (b msgBodyBounds, ok bool) {
	switch {
	case dir == fromClient && typ == msgHello:
		return msgBodyBounds{helloMinLen, helloMaxLen}, true
	case dir == fromClient && typ == msgIdentify:
		return msgBodyBounds{identifyMinLen, identifyMaxLen}, true
	case dir == fromClient && typ == msgTransfer:
		return msgBodyBounds{transferHdrLen + 1, transferHdrLen + MaxTransfer}, true
	case dir == fromServer && typ == msgWelcome:
		return msgBodyBounds{welcomeMinLen, welcomeMaxLen}, true
	case dir == fromServer && typ == msgResult:
		return msgBodyBounds{resultHdrLen, resultHdrLen + MaxTransfer}, true
	case dir == fromServer && typ == msgIRQ:
		return msgBodyBounds{0, 0}, true
	case dir == fromServer && typ == msgError:
		return msgBodyBounds{errorMinLen, errorMinLen + MaxText}, true
	}
	return msgBodyBounds{}, false
}

// closeReason is why a connection was closed for a protocol error. Its
// number is also the code of an error message.
type closeReason uint8

// Close reasons.
const (
	reasonNone           closeReason = iota
	reasonShort                      // the stream ended inside a message
	reasonOversized                  // length field over socketMaxLength
	reasonBadLength                  // length outside the bounds of the type
	reasonUnknownType                // type byte not in the protocol
	reasonUnexpected                 // a known type in the wrong direction or state
	reasonBadMagic                   // hello without the magic
	reasonBadVersion                 // hello of a version this side does not speak
	reasonBadHello                   // hello fields out of range
	reasonBadResult                  // result for no request, or of the wrong length or status
	reasonHelloTimeout               // no hello in time
	reasonTooManyConns               // the server's connection limit is reached
	reasonWriteFailed                // a write failed or timed out
	reasonIdle                       // nothing sent for the idle limit, no interrupt subscription
	reasonMessageTimeout             // a message not complete in time after its first byte
	reasonTakenOver                  // another client took the chip over (--takeover)
	numReasons
)

var reasonNames = [numReasons]string{
	reasonNone:           "none",
	reasonShort:          "short message",
	reasonOversized:      "oversized length",
	reasonBadLength:      "bad length",
	reasonUnknownType:    "unknown type",
	reasonUnexpected:     "unexpected message",
	reasonBadMagic:       "bad magic",
	reasonBadVersion:     "bad version",
	reasonBadHello:       "bad hello",
	reasonBadResult:      "bad result",
	reasonHelloTimeout:   "hello timeout",
	reasonTooManyConns:   "too many connections",
	reasonWriteFailed:    "write failed",
	reasonIdle:           "idle timeout",
	reasonMessageTimeout: "message timeout",
	reasonTakenOver:      "taken over",
}

func (r closeReason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason %d", uint8(r))
}

// ProtocolError is why the socket bridge closed a connection: the
// peer broke the protocol (or, for "too many connections" and "hello
// timeout", the connection could not be served). It wraps EPROTO.
type ProtocolError struct {
	Reason string // a fixed phrase: "short message", "oversized length", ...
	Detail string
	code   closeReason
}

// Error implements error.
func (e *ProtocolError) Error() string {
	return "spibridge: socket protocol error: " + e.Reason + ": " + e.Detail
}

// Unwrap makes errors.Is(err, syscall.EPROTO) true.
func (e *ProtocolError) Unwrap() error { return syscall.EPROTO }

func protoErr(r closeReason, format string, args ...any) *ProtocolError {
	return &ProtocolError{Reason: r.String(), Detail: fmt.Sprintf(format, args...), code: r}
}

// readHeader reads one message header from r and checks its length
// against the bounds of its type for direction dir, before anything of the
// body is read. A clean end of stream at a message boundary is io.EOF;
// other I/O errors are returned as they are.
func readHeader(r *bufio.Reader, hdr *[frameHeaderLen]byte, dir msgDirection) (msgType, int, error) {
	// The length is checked as soon as its 4 bytes are in: a length of 0
	// or over the limit is answered without waiting for a type byte.
	if n, err := io.ReadFull(r, hdr[:4]); err != nil {
		switch {
		case n == 0:
			return 0, 0, err // at a message boundary
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return 0, 0, protoErr(reasonShort, "stream ended after %d of %d header bytes", n, frameHeaderLen)
		default:
			return 0, 0, &midMessageError{err}
		}
	}
	length := binary.BigEndian.Uint32(hdr[0:4])
	if length > socketMaxLength {
		return 0, 0, protoErr(reasonOversized, "length %d over the limit of %d", length, socketMaxLength)
	}
	if length == 0 {
		return 0, 0, protoErr(reasonBadLength, "length 0 (no type byte)")
	}
	if _, err := io.ReadFull(r, hdr[4:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, 0, protoErr(reasonShort, "stream ended after 4 of %d header bytes", frameHeaderLen)
		}
		return 0, 0, &midMessageError{err}
	}
	typ := msgType(hdr[4])
	b, ok := msgBounds(dir, typ)
	if !ok {
		if _, other := msgBounds(1-dir, typ); other {
			return 0, 0, protoErr(reasonUnexpected, "message type 0x%02x travels the other way", uint8(typ))
		}
		return 0, 0, protoErr(reasonUnknownType, "message type 0x%02x", uint8(typ))
	}
	n := int(length) - 1
	if n < b.min || n > b.max {
		return 0, 0, protoErr(reasonBadLength, "type 0x%02x with a %d-byte body, want %d-%d", uint8(typ), n, b.min, b.max)
	}
	return typ, n, nil
}

// readBody fills b from r; a stream that ends first is a short message.
func readBody(r *bufio.Reader, b []byte) error {
	if n, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return protoErr(reasonShort, "stream ended after %d of %d body bytes", n, len(b))
		}
		return &midMessageError{err}
	}
	return nil
}

// discardBody skips n body bytes.
func discardBody(r *bufio.Reader, n int) error {
	if m, err := r.Discard(n); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return protoErr(reasonShort, "stream ended after %d of %d body bytes", m, n)
		}
		return &midMessageError{err}
	}
	return nil
}

// midMessageError is an I/O error (a deadline, a reset) that struck
// inside a message: the stream cannot be resumed.
type midMessageError struct{ err error }

func (e *midMessageError) Error() string {
	return "spibridge: socket: stream broken inside a message: " + e.err.Error()
}
func (e *midMessageError) Unwrap() error { return e.err }

// putHeader writes a message header for a body of n bytes into b[:5].
func putHeader(b []byte, typ msgType, n int) {
	binary.BigEndian.PutUint32(b[0:4], uint32(1+n))
	b[4] = byte(typ)
}

// clientHello is a client's hello.
type clientHello struct {
	version uint16
	flags   uint16
}

// appendHello appends a client hello message to b.
func appendHello(b []byte, flags uint16) []byte {
	var m [frameHeaderLen + helloLen]byte
	putHeader(m[:], msgHello, helloLen)
	copy(m[5:9], socketMagic)
	binary.BigEndian.PutUint16(m[9:11], Version)
	binary.BigEndian.PutUint16(m[11:13], flags)
	return append(b, m[:]...)
}

// parseHello decodes a hello body (bounds already checked).
func parseHello(b []byte) (clientHello, error) {
	if string(b[0:4]) != socketMagic {
		return clientHello{}, protoErr(reasonBadMagic, "hello starts % x, want %q", b[0:4], socketMagic)
	}
	h := clientHello{version: binary.BigEndian.Uint16(b[4:6])}
	if h.version != Version {
		return h, protoErr(reasonBadVersion, "client speaks version %d, server speaks %d", h.version, Version)
	}
	if len(b) != helloLen {
		return h, protoErr(reasonBadLength, "version %d hello of %d bytes, want %d", h.version, len(b), helloLen)
	}
	h.flags = binary.BigEndian.Uint16(b[6:8])
	return h, nil
}

// serverHello is a server's hello: what the client needs to bound its waits.
type serverHello struct {
	version     uint16
	flags       uint16
	timing      spibridge.Timing
	maxTransfer int
	maxInFlight int
	name        string
}

// appendWelcome appends a server hello message to b.
func appendWelcome(b []byte, w serverHello) []byte {
	name := w.name[:min(len(w.name), MaxName)]
	n := welcomeMinLen + len(name)
	var m [frameHeaderLen + welcomeMinLen]byte
	putHeader(m[:], msgWelcome, n)
	p := m[frameHeaderLen:]
	copy(p[0:4], socketMagic)
	binary.BigEndian.PutUint16(p[4:6], Version)
	binary.BigEndian.PutUint16(p[6:8], w.flags)
	binary.BigEndian.PutUint64(p[8:16], uint64(max(w.timing.ClockHz, 0)))
	overhead := w.timing.Overhead
	if !w.timing.Throttled() {
		overhead = 0 // no model, no overhead: transfers take no emulated time
	}
	binary.BigEndian.PutUint64(p[16:24], uint64(max(overhead, 0)))
	mode, timeout := timeoutLinux, time.Duration(0)
	if w.timing.Timeout > 0 {
		mode, timeout = timeoutFixed, w.timing.Timeout
	}
	p[24] = mode
	binary.BigEndian.PutUint64(p[25:33], uint64(timeout))
	binary.BigEndian.PutUint32(p[33:37], uint32(w.maxTransfer))
	binary.BigEndian.PutUint16(p[37:39], uint16(w.maxInFlight))
	p[39] = uint8(len(name))
	b = append(b, m[:]...)
	return append(b, name...)
}

// parseWelcome decodes a server hello body (bounds already checked).
func parseWelcome(b []byte) (serverHello, error) {
	if string(b[0:4]) != socketMagic {
		return serverHello{}, protoErr(reasonBadMagic, "server hello starts % x, want %q", b[0:4], socketMagic)
	}
	w := serverHello{version: binary.BigEndian.Uint16(b[4:6])}
	if w.version != Version {
		return w, protoErr(reasonBadVersion, "server speaks version %d, client speaks %d", w.version, Version)
	}
	w.flags = binary.BigEndian.Uint16(b[6:8])
	clock := binary.BigEndian.Uint64(b[8:16])
	overhead := binary.BigEndian.Uint64(b[16:24])
	mode := b[24]
	timeout := binary.BigEndian.Uint64(b[25:33])
	w.maxTransfer = int(binary.BigEndian.Uint32(b[33:37]))
	w.maxInFlight = int(binary.BigEndian.Uint16(b[37:39]))
	nameLen := int(b[39])
	const maxNs = uint64(1<<63 - 1)
	switch {
	case clock > maxNs || overhead > maxNs || timeout > maxNs:
		return w, protoErr(reasonBadHello, "clock %d Hz, overhead %d ns, timeout %d ns out of range", clock, overhead, timeout)
	case mode == timeoutLinux && timeout != 0, mode == timeoutFixed && timeout == 0, mode > timeoutFixed:
		return w, protoErr(reasonBadHello, "timeout mode %d with timeout %d ns", mode, timeout)
	case w.maxTransfer < 1 || w.maxTransfer > MaxTransfer:
		return w, protoErr(reasonBadHello, "max transfer %d, want 1-%d", w.maxTransfer, MaxTransfer)
	case w.maxInFlight < 1 || w.maxInFlight > MaxInFlight:
		return w, protoErr(reasonBadHello, "max in flight %d, want 1-%d", w.maxInFlight, MaxInFlight)
	case nameLen > MaxName || welcomeMinLen+nameLen != len(b):
		return w, protoErr(reasonBadLength, "server hello of %d bytes with a %d-byte name", len(b), nameLen)
	}
	w.timing = spibridge.Timing{ClockHz: int64(clock), Overhead: time.Duration(overhead), Timeout: time.Duration(timeout)}
	w.name = string(b[welcomeMinLen:])
	return w, nil
}

// putResultHeader writes the header of a result message carrying a body
// of n bytes after id and status into b[:10].
func putResultHeader(b []byte, id uint32, status uint8, n int) {
	putHeader(b, msgResult, resultHdrLen+n)
	binary.BigEndian.PutUint32(b[5:9], id)
	b[9] = status
}

// appendResultError appends a failed result carrying err's text to b.
func appendResultError(b []byte, id uint32, status uint8, err error) []byte {
	text := err.Error()
	text = text[:min(len(text), MaxText)]
	var h [frameHeaderLen + resultHdrLen]byte
	putResultHeader(h[:], id, status, len(text))
	b = append(b, h[:]...)
	return append(b, text...)
}

// appendError appends an error message (the server closes after it).
func appendError(b []byte, code closeReason, text string) []byte {
	text = text[:min(len(text), MaxText)]
	var h [frameHeaderLen + errorMinLen]byte
	putHeader(h[:], msgError, errorMinLen+len(text))
	h[5] = byte(code)
	b = append(b, h[:]...)
	return append(b, text...)
}

// identify is a client's identify message: who it is, so that the
// server knows which connections belong to one driver across reconnects.
type identify struct {
	id       uint64
	takeover bool
	label    string
}

// appendIdentify appends an identify message to b.
func appendIdentify(b []byte, m identify) []byte {
	label := m.label[:min(len(m.label), MaxLabel)]
	var h [frameHeaderLen + identifyMinLen]byte
	putHeader(h[:], msgIdentify, identifyMinLen+len(label))
	binary.BigEndian.PutUint64(h[5:13], m.id)
	if m.takeover {
		h[13] = identifyTakeover
	}
	b = append(b, h[:]...)
	return append(b, label...)
}

// parseIdentify decodes an identify body (bounds already checked).
func parseIdentify(b []byte) (identify, error) {
	m := identify{id: binary.BigEndian.Uint64(b[0:8]), takeover: b[8]&identifyTakeover != 0, label: string(b[identifyMinLen:])}
	if m.id == 0 {
		return m, protoErr(reasonBadHello, "identify with client id 0")
	}
	if b[8]&^identifyTakeover != 0 {
		return m, protoErr(reasonBadHello, "identify flags 0x%02x", b[8])
	}
	return m, nil
}
