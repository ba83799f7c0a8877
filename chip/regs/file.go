package regs

import "fmt"

// File is the register file of one chip. It is not safe for concurrent
// use: the chip serialises access under its own lock.
type File struct {
	vals   [0x1000 / 8]uint64
	isLive [0x1000 / 8]bool
	resets map[uint16]uint64
	live   func(off uint16) uint64

	roWrites       uint64
	unmappedWrites uint64
}

// NewFile returns a register file at its reset values. resets overrides
// the reset value of the given registers (configuration-dependent values);
// live computes the value of Live registers at the moment they are read.
func NewFile(resets map[uint16]uint64, live func(off uint16) uint64) *File {
	for off := range resets {
		if _, ok := index[off]; !ok {
			panic(fmt.Sprintf("regs: reset override for undeclared register %#04x", off))
		}
	}
	f := &File{resets: resets, live: live}
	for _, d := range Map {
		f.isLive[d.Offset/8] = d.Access == Live && live != nil
	}
	f.Reset()
	return f
}

// Reset restores every register to its reset value.
func (f *File) Reset() {
	clear(f.vals[:])
	for _, d := range Map {
		v, ok := f.resets[d.Offset]
		if !ok {
			v = d.Reset
		}
		f.vals[d.Offset/8] = v
	}
}

// Get returns the 64-bit value of the register at off (computed for Live
// registers).
func (f *File) Get(off uint16) uint64 {
	i := (off & 0xFFF) / 8
	if f.isLive[i] && off&7 == 0 {
		return f.live(off)
	}
	return f.vals[i]
}

// Set stores v in the register at off, whatever its access mode: this is
// the chip's own write path.
func (f *File) Set(off uint16, v uint64) { f.vals[(off&0xFFF)/8] = v }

// Add adds n to the counter at off.
func (f *File) Add(off uint16, n uint64) { f.vals[(off&0xFFF)/8] += n }

// Read32 performs an SPI register read of the 32-bit half at addr.
// Unmapped addresses read 0.
func (f *File) Read32(addr uint16) uint32 {
	d, h, ok := Resolve(addr)
	if !ok {
		return 0
	}
	v := f.Get(d.Offset)
	if h == High {
		return uint32(v >> 32)
	}
	return uint32(v)
}

// Write32 performs an SPI register write of the 32-bit half at addr and
// returns the register written, or nil when the write was ignored
// (unmapped address or a register that is not ReadWrite; both are
// counted). Self-clearing action bits clear their counters and are not
// stored.
func (f *File) Write32(addr uint16, v uint32) *Def {
	d, h, ok := Resolve(addr)
	if !ok {
		f.unmappedWrites++
		return nil
	}
	if d.Access != ReadWrite {
		f.roWrites++
		return nil
	}
	shift, halfMask := uint(0), uint64(0xFFFFFFFF)
	if h == High {
		shift, halfMask = 32, 0xFFFFFFFF<<32
	}
	in := uint64(v) << shift
	for _, a := range d.Actions {
		if a.Field.Mask()&halfMask != 0 && a.Field.Set(in) {
			for _, c := range a.Clears {
				f.vals[c/8] = 0
			}
		}
	}
	mask := d.writeMask() & halfMask
	f.vals[d.Offset/8] = f.vals[d.Offset/8]&^mask | in&mask
	return d
}

// IgnoredWrites returns how many SPI writes hit a read-only register and
// how many hit an unmapped address.
func (f *File) IgnoredWrites() (readOnly, unmapped uint64) { return f.roWrites, f.unmappedWrites }
