package spitrace

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"tsnsim/chip/proto"
	"tsnsim/chip/regs"
	"tsnsim/spibridge"
)

// jsonLine is a record's line as encoding/json writes it (HTML escaping
// off): what appendRecord and appendPPS must write, byte for byte.
func jsonLine(t *testing.T, r any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// trickyStrings are strings whose JSON needs escaping, or looks as if it
// might.
var trickyStrings = []string{
	"", "a", "spi: transfer timed out", `quote " and backslash \`, "tab\tnew\nline\r",
	"\x00\x01\x1f\x7f", "<html> & stuff", "é ü ✓", "\u2028\u2029", "bad utf-8 \xff\xfe end",
	"errno 4000", "spi.latency+spi.flip", `say "hi"`, `back\slash`,
}

// TestAppendRecordIsJSON: appendRecord and appendPPS write what
// encoding/json writes, for hand-picked records and 20000 random ones
// covering every field empty and set, and strings that need escaping.
func TestAppendRecordIsJSON(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	fixed := []Record{
		{},
		{T: 1, Node: "a", Space: spibridge.SpaceRegRead, Dir: spibridge.DirRead, Addr: 0x3288, Reg: "TSN_SYSCOUNT_H",
			Len: 8, Dur: 24266, Start: i64(0), LateNs: 21042, Result: ResultOK,
			MOSI: proto.RegRead(regs.TSNSysCount), MISO: make([]byte, 8)},
		{T: -5, Node: "b", Addr: 0xffff, Dur: -1, Start: i64(-7), CallNs: i64(0), Result: ResultError,
			Err: `spi: "stuck" \ for 1s`, Errno: "ETIMEDOUT", Fault: "spi.stuck", MOSI: []byte{}},
		{Node: "a", Event: EventPPS, Seq: 1<<64 - 1, Syscount: 125000000},
	}
	for _, r := range fixed {
		got, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if want := jsonLine(t, &r); !bytes.Equal(got, want) {
			t.Errorf("record %+v:\ngot  %s\nwant %s", r, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return trickyStrings[rng.IntN(len(trickyStrings))] }
	maybe := func() bool { return rng.IntN(2) == 0 }
	bytesOf := func() []byte {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for range 20000 {
		r := Record{
			T: rng.Int64() - rng.Int64(), Node: pick(), Space: spibridge.Space(pick()), Dir: spibridge.Dir(pick()),
			Addr: Addr(rng.Uint32()), Len: rng.IntN(2000) - 10, Dur: rng.Int64N(1e9) - 1e3,
			Result: pick(), MOSI: bytesOf(), MISO: bytesOf(),
		}
		if maybe() {
			r.Event, r.Seq, r.Syscount = pick(), rng.Uint64()>>rng.IntN(64), rng.Uint64()>>rng.IntN(64)
		}
		if maybe() {
			r.Reg = pick()
		}
		if maybe() {
			r.Start = i64(rng.Int64N(1e12) - 1e6)
		}
		if maybe() {
			r.LateNs = rng.Int64N(1e6) - 1e3
		}
		if maybe() {
			r.CallNs = i64(rng.Int64N(1e6))
		}
		if maybe() {
			r.Err, r.Errno, r.Fault = pick(), pick(), pick()
		}
		got, err := appendRecord([]byte("prefix"), &r)
		if err != nil {
			t.Fatal(err)
		}
		if want := append([]byte("prefix"), jsonLine(t, &r)...); !bytes.Equal(got, want) {
			t.Fatalf("record %+v:\ngot  %s\nwant %s", r, got, want)
		}
		p := ppsLine{T: r.T, Node: r.Node, Event: r.Event, Seq: r.Seq, Syscount: r.Syscount}
		if got, err := appendPPS(nil, &p); err != nil || !bytes.Equal(got, jsonLine(t, &p)) {
			t.Fatalf("PPS line %+v:\ngot  %s (%v)\nwant %s", p, got, err, jsonLine(t, &p))
		}
	}
}

// TestRecordLineReadsBack: a written line reads back as the record.
func TestRecordLineReadsBack(t *testing.T) {
	start := epoch.Add(3 * time.Microsecond)
	r := RecordOf(spibridge.TraceEvent{Node: "a", Start: epoch, BusStart: start, Duration: 30 * time.Microsecond,
		Header: spibridge.DecodeHeader(proto.RegRead(regs.TSNSysCount)), Len: 8,
		MOSI: proto.RegRead(regs.TSNSysCount), MISO: []byte{0, 0, 0, 0, 1, 2, 3, 4}, Late: time.Microsecond, Call: 40 * time.Microsecond}, epoch)
	line, err := appendRecord(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := Read(bytes.NewReader(line))
	if err != nil || len(recs) != 1 {
		t.Fatalf("read %d records: %v", len(recs), err)
	}
	got := recs[0]
	if got.T != r.T || *got.Start != *r.Start || got.Dur != r.Dur || *got.CallNs != *r.CallNs || got.Reg != r.Reg ||
		!bytes.Equal(got.MISO, r.MISO) || got.Addr != r.Addr || got.LateNs != r.LateNs {
		t.Errorf("read back %+v, wrote %+v", got, r)
	}
}
