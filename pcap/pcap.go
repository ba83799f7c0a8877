// Package pcap records the frames on a virtual cable as a pcap file
// (nanosecond timestamps, Ethernet link type) that tcpdump -r and
// tshark -r read. Timestamps are emulated time: when the frame's first
// byte after the preamble entered the cable.
package pcap

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// snaplen is the largest frame the cable carries (1560 incl. FCS).
const snaplen = 1560

// fcsLen is stripped from every frame: captures show frames as a NIC
// without FCS offload hands them up, which is what tcpdump users expect.
const fcsLen = 4

// Writer appends frames to a pcap file. It is safe for concurrent use.
type Writer struct {
	mu     sync.Mutex
	f      *os.File
	buf    *bufio.Writer
	w      *pcapgo.Writer
	frames uint64
	err    error // first write error, reported by Close
}

// Create creates (or truncates) the file at path and writes the pcap
// header.
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	buf := bufio.NewWriter(f)
	w := pcapgo.NewWriterNanos(buf)
	if err := w.WriteFileHeader(snaplen, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, fmt.Errorf("pcap: write header: %w", err)
	}
	return &Writer{f: f, buf: buf, w: w}, nil
}

// Write records one frame as carried on the cable (with its FCS, which
// is stripped) at time ts.
func (w *Writer) Write(frame []byte, ts time.Time) {
	data := frame
	if len(data) >= fcsLen {
		data = data[:len(data)-fcsLen]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}
	if err := w.w.WritePacket(ci, data); err != nil {
		w.err = fmt.Errorf("pcap: write frame %d: %w", w.frames+1, err)
		return
	}
	w.frames++
}

// Frames returns how many frames were written.
func (w *Writer) Frames() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.frames
}

// Close flushes and closes the file; it returns the first error of any
// write, flush or close.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := errors.Join(w.err, w.buf.Flush(), w.f.Close())
	w.err = errors.New("pcap: writer closed")
	return err
}
