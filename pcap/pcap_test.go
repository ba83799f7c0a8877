package pcap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cable.pcap")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 123456789)
	frames := [][]byte{bytes.Repeat([]byte{0xAA}, 64), bytes.Repeat([]byte{0x55}, 1518)}
	for i, f := range frames {
		w.Write(f, ts.Add(time.Duration(i)*time.Microsecond))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Frames() != 2 {
		t.Errorf("Frames() = %d", w.Frames())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Resolution().ToDuration() != time.Nanosecond {
		t.Errorf("link type %v, resolution %v", r.LinkType(), r.Resolution())
	}
	for i, want := range frames {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, want[:len(want)-fcsLen]) {
			t.Errorf("frame %d: %d bytes, want %d without FCS", i, len(data), len(want)-fcsLen)
		}
		if wantTS := ts.Add(time.Duration(i) * time.Microsecond); !ci.Timestamp.Equal(wantTS) {
			t.Errorf("frame %d at %v, want %v", i, ci.Timestamp, wantTS)
		}
	}
	w.Write(frames[0], ts) // after Close: ignored, no panic
}
