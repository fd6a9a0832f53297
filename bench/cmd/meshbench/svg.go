package main

import (
	"fmt"
	"math"
	"strings"
)

// svg draws one panel per metric against N (log scale): per system a
// solid line through the medians and a dashed one through the p95s. A
// figure that is only a lower bound because it reaches a timeout (see
// report.stat) is drawn at the top of its panel as a cross. Written by hand:
// a few polylines need no plotting dependency.
func (rp *report) svg() []byte {
	const (
		cols, pw, ph      = 3, 330, 240
		left, right, top  = 62, 16, 34
		bottom, legendH   = 40, 36
		meshColor, mlColr = "#1f6fd1", "#e07b00"
	)
	rows := (len(metrics) + cols - 1) / cols
	W, H := cols*pw, rows*ph+legendH
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", W, H, W, H)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	// Legend.
	lx := 20
	for _, s := range []struct{ name, color, dash string }{
		{"mesh median", meshColor, ""}, {"mesh p95", meshColor, "5,4"},
		{"memberlist median", mlColr, ""}, {"memberlist p95", mlColr, "5,4"},
	} {
		w(`<line x1="%d" y1="18" x2="%d" y2="18" stroke="%s" stroke-width="2.5" stroke-dasharray="%s"/>`, lx, lx+28, s.color, s.dash)
		w(`<text x="%d" y="22">%s</text>`+"\n", lx+34, s.name)
		lx += 60 + 7*len(s.name)
	}
	w(`<text x="%d" y="22" fill="#555">P = %v; times in periods; x: cluster size N (log scale)</text>`+"\n", lx+10, rp.o.period)
	w(`<text x="20" y="34" font-size="10" fill="#555">× &gt; limit: censored, the figure reaches a change not done within %.0f periods and is only a lower bound</text>`+"\n", rp.o.limit)

	sizes := rp.o.sizes
	lo, hi := math.Log2(float64(sizes[0])), math.Log2(float64(sizes[len(sizes)-1]))
	for i, mt := range metrics {
		ox, oy := (i%cols)*pw, legendH+(i/cols)*ph
		x0, x1 := float64(ox+left), float64(ox+pw-right)
		y0, y1 := float64(oy+ph-bottom), float64(oy+top) // y0 bottom, y1 top
		xOf := func(n int) float64 {
			if hi == lo {
				return (x0 + x1) / 2
			}
			return x0 + (math.Log2(float64(n))-lo)/(hi-lo)*(x1-x0)
		}
		// Series and the y range.
		type series struct {
			color, dash string
			ys          []float64
		}
		var ss []series
		ymax := 0.0
		for _, sys := range []struct{ name, color string }{{"mesh", meshColor}, {"memberlist", mlColr}} {
			for _, st := range []struct {
				f    func([]float64) float64
				dash string
			}{{median, ""}, {p95, "5,4"}} {
				ys := make([]float64, len(sizes))
				for j, n := range sizes {
					ys[j] = math.NaN()
					if r := rp.find(sys.name, n); r != nil {
						ys[j] = st.f(mt.get(r))
						if b := rp.stat(mt.get(r), st.f); b.rel != "" {
							ys[j] = math.Inf(1)
						}
						if mt.unit == "count" {
							ys[j] = sum(mt.get(r))
							if r.LossSkipped != "" {
								ys[j] = math.NaN()
							}
						}
					}
					if !math.IsNaN(ys[j]) && !math.IsInf(ys[j], 0) {
						ymax = math.Max(ymax, ys[j])
					}
				}
				ss = append(ss, series{sys.color, st.dash, ys})
			}
		}
		step := niceStep(ymax / 4)
		ytop := step * math.Ceil(ymax/step)
		if ytop == 0 {
			ytop, step = 1, 0.25
		}
		yOf := func(v float64) float64 { return y0 - v/ytop*(y0-y1) }

		title := mt.title
		if mt.unit != "" {
			title += " (" + mt.unit + ")"
		}
		w(`<text x="%.0f" y="%d" font-weight="bold" font-size="12">%s</text>`+"\n", x0, oy+top-12, title)
		for v := 0.0; v <= ytop+step/2; v += step {
			y := yOf(v)
			w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, x0, y, x1, y)
			w(`<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", x0-5, y+4, tick(v))
		}
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`, x0, y0, x1, y0)
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`+"\n", x0, y0, x0, y1)
		for _, n := range sizes {
			x := xOf(n)
			w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888"/>`, x, y0, x, y0+4)
			w(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%d</text>`+"\n", x, y0+16, n)
		}
		w(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#666">N</text>`+"\n", (x0+x1)/2, y0+30)
		for _, s := range ss {
			var pts []string
			flush := func() {
				if len(pts) > 1 {
					w(`<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"/>`+"\n", s.color, s.dash, strings.Join(pts, " "))
				}
				pts = nil
			}
			for j, v := range s.ys {
				x := xOf(sizes[j])
				switch {
				case math.IsNaN(v):
					flush()
				case math.IsInf(v, 1):
					flush()
					dy := 4.0 // mesh's label above memberlist's, so both show
					if s.color == mlColr {
						dy = 16
					}
					w(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s" font-weight="bold">× &gt; limit</text>`+"\n", x, y1+dy, s.color)
				default:
					y := yOf(v)
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
					if s.dash == "" {
						w(`<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x, y, s.color)
					} else {
						w(`<circle cx="%.1f" cy="%.1f" r="3" fill="white" stroke="%s" stroke-width="1.5"/>`+"\n", x, y, s.color)
					}
				}
			}
			flush()
		}
	}
	w("</svg>\n")
	return []byte(b.String())
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func tick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 1:
		return fmt.Sprintf("%g", math.Round(v*100)/100)
	}
	return fmt.Sprintf("%.3g", v)
}
