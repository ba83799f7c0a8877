package spitrace

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// appendRecord appends r as one JSON line, byte for byte what
// encoding/json's Encoder (HTML escaping off) writes for it, without
// reflection: a traced run records every transfer on the goroutine that
// made it, and reflection made that about 2 µs of CPU per transfer in
// the middle of the run it measures. Strings that need escaping (rare:
// an error text) go through encoding/json (appendString).
func appendRecord(b []byte, r *Record) ([]byte, error) {
	var err error
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, r.T, 10)
	b = append(b, `,"node":`...)
	b, err = appendString(b, r.Node, err)
	if r.Event != "" {
		b = append(b, `,"event":`...)
		b, err = appendString(b, r.Event, err)
	}
	if r.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, r.Seq, 10)
	}
	if r.Syscount != 0 {
		b = append(b, `,"syscount":`...)
		b = strconv.AppendUint(b, r.Syscount, 10)
	}
	b = append(b, `,"space":`...)
	b, err = appendString(b, string(r.Space), err)
	b = append(b, `,"dir":`...)
	b, err = appendString(b, string(r.Dir), err)
	b = append(b, `,"addr":"0x`...)
	b = appendHex4(b, uint16(r.Addr))
	b = append(b, '"')
	if r.Reg != "" {
		b = append(b, `,"reg":`...)
		b, err = appendString(b, r.Reg, err)
	}
	b = append(b, `,"len":`...)
	b = strconv.AppendInt(b, int64(r.Len), 10)
	b = append(b, `,"dur":`...)
	b = strconv.AppendInt(b, r.Dur, 10)
	if r.Start != nil {
		b = append(b, `,"start":`...)
		b = strconv.AppendInt(b, *r.Start, 10)
	}
	if r.LateNs != 0 {
		b = append(b, `,"late_ns":`...)
		b = strconv.AppendInt(b, r.LateNs, 10)
	}
	if r.CallNs != nil {
		b = append(b, `,"call_ns":`...)
		b = strconv.AppendInt(b, *r.CallNs, 10)
	}
	b = append(b, `,"result":`...)
	b, err = appendString(b, r.Result, err)
	for _, f := range [...]struct{ key, v string }{{`,"err":`, r.Err}, {`,"errno":`, r.Errno}, {`,"fault":`, r.Fault}} {
		if f.v != "" {
			b = append(b, f.key...)
			b, err = appendString(b, f.v, err)
		}
	}
	b = append(b, `,"mosi":"`...)
	b = hex.AppendEncode(b, r.MOSI)
	b = append(b, '"')
	if len(r.MISO) != 0 {
		b = append(b, `,"miso":"`...)
		b = hex.AppendEncode(b, r.MISO)
		b = append(b, '"')
	}
	return append(b, "}\n"...), err
}

// appendPPS appends a PPS edge's line, as encoding/json writes it.
func appendPPS(b []byte, p *ppsLine) ([]byte, error) {
	var err error
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, p.T, 10)
	b = append(b, `,"node":`...)
	b, err = appendString(b, p.Node, err)
	b = append(b, `,"event":`...)
	b, err = appendString(b, p.Event, err)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	b = append(b, `,"syscount":`...)
	b = strconv.AppendUint(b, p.Syscount, 10)
	return append(b, "}\n"...), err
}

// appendHex4 appends v as four lower-case hex digits.
func appendHex4(b []byte, v uint16) []byte {
	const digits = "0123456789abcdef"
	return append(b, digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15])
}

// appendString appends s as a JSON string. Printable ASCII other than
// '"' and '\\' is copied as it is; anything else is escaped by
// encoding/json (HTML escaping off), as the Encoder would. err is the
// error so far, returned with the first new one.
func appendString(b []byte, s string, err error) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return appendEscaped(b, s, err)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), err
}

func appendEscaped(b []byte, s string, err error) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if e := enc.Encode(s); e != nil {
		if err == nil {
			err = fmt.Errorf("spitrace: encoding a record: %w", e)
		}
		return b, err
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), err
}
