package main

import (
	"fmt"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"tsnsim/gptp"
)

// writePlot draws the follower's measured offset from master against
// time (gonum/plot), as SVG (or PNG, by the file's extension).
func writePlot(path string, samples []gptp.Sample, start time.Time) error {
	if len(samples) == 0 {
		return fmt.Errorf("no offsets measured")
	}
	p := plot.New()
	p.Title.Text = "gPTP: node b offset from grandmaster a"
	p.X.Label.Text = "emulated time (s)"
	p.Y.Label.Text = "offset (ns)"
	pts := make(plotter.XYs, len(samples))
	delay := make(plotter.XYs, len(samples))
	for i, s := range samples {
		x := s.At.Sub(start).Seconds()
		pts[i] = plotter.XY{X: x, Y: float64(s.Offset)}
		delay[i] = plotter.XY{X: x, Y: s.PathDelay}
	}
	line, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	dl, err := plotter.NewLine(delay)
	if err != nil {
		return err
	}
	dl.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	p.Add(plotter.NewGrid(), line, dl)
	p.Legend.Add("offset from master", line)
	p.Legend.Add("mean path delay", dl)
	p.Legend.Top = false
	return p.Save(20*vg.Centimeter, 10*vg.Centimeter, path)
}
