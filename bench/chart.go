package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WriteChart renders the report's chart as PNG: accepted packets/s at full load per
// target and driver on the left, latency percentiles at half load per target and
// driver on the right.
func WriteChart(rep *Report, w io.Writer) error {
	targets, drivers := namesOf(rep.Rows)
	if len(targets) == 0 {
		return fmt.Errorf("chart: no rows")
	}
	accepted := func(target, driver string) float64 {
		for _, r := range rep.Rows {
			if r.Target == target && r.Driver == driver {
				return r.Accepted / 1000
			}
		}
		return 0
	}
	throughput := plot.New()
	throughput.Title.Text = fmt.Sprintf("Full load: accepted packets/s (median of %s)", plural(roundsOf(rep.Rows), "round"))
	throughput.Y.Label.Text = "thousand packets/s (5 messages each)"
	if !rep.When.IsZero() {
		throughput.X.Label.Text = fmt.Sprintf("%s, %s; other processes used %s of the CPU",
			rep.When.UTC().Format("2006-01-02 15:04 UTC"), rep.Machine, Percent(rep.Others))
		throughput.X.Label.TextStyle.Font.Size = vg.Points(9)
	}
	series := make([][]float64, len(drivers))
	for i, d := range drivers {
		for _, t := range targets {
			series[i] = append(series[i], accepted(t, d))
		}
	}
	if err := groupedBars(throughput, targets, drivers, series, false, func(v float64) string {
		return strconv.FormatFloat(v, 'f', 1, 64) + "k"
	}); err != nil {
		return err
	}

	plots := [][]*plot.Plot{{throughput}} // one row of panels
	if len(rep.Latency) > 0 {
		latency, err := latencyPanel(rep.Latency)
		if err != nil {
			return err
		}
		plots[0] = append(plots[0], latency)
	}

	width := vg.Length(len(plots[0])) * 8 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, 5*vg.Inch), vgimg.UseDPI(100))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(plots[0]), PadX: vg.Inch / 2, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	for i, p := range plots[0] {
		p.Draw(tiles.At(dc, i, 0))
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

// latencyPanel shows p50 and p99 of every target at half load, one pair of bars per
// driver (each driver ran at its own rate, named in the title); p99.9 is in the
// table only, so a group stays narrow enough for its labels.
func latencyPanel(rows []Row) (*plot.Plot, error) {
	targets, drivers := namesOf(rows)
	var legend, rates []string
	var series [][]float64
	for _, d := range drivers {
		p50, p99 := make([]float64, len(targets)), make([]float64, len(targets))
		rate := 0.0
		for i, t := range targets {
			for _, r := range rows {
				if r.Target == t && r.Driver == d {
					p50[i], p99[i], rate = ms(r.P50), ms(r.P99), r.Rate
				}
			}
		}
		legend = append(legend, d+" p50", d+" p99")
		series = append(series, p50, p99)
		rates = append(rates, fmt.Sprintf("%s %s/s", d, Count(rate)))
	}
	p := plot.New()
	p.Title.Text = "Latency at half load, constant rate: " + strings.Join(rates, ", ")
	p.Y.Label.Text = "milliseconds (log scale)"
	if err := groupedBars(p, targets, legend, series, true, func(v float64) string {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// groupedBars adds one bar series per name in legend, grouped over the categories,
// each bar labelled with its value. With logY the value axis is logarithmic (for
// latencies that span microseconds to seconds): gonum draws bars up from 0, which a
// log axis cannot show, so each bar stands on an undrawn base at the axis floor.
func groupedBars(p *plot.Plot, categories, legend []string, series [][]float64, logY bool, label func(float64) string) error {
	const barWidth = vg.Length(22)
	top, floor := 0.0, math.Inf(1)
	for _, vs := range series {
		for _, v := range vs {
			top = max(top, v)
			if v > 0 {
				floor = min(floor, v)
			}
		}
	}
	if math.IsInf(floor, 1) {
		floor = 1
	}
	floor = math.Pow(10, math.Floor(math.Log10(floor))) // a power of ten at or below every value
	for i, vs := range series {
		heights := plotter.Values(vs)
		var base *plotter.BarChart
		if logY {
			heights = make(plotter.Values, len(vs))
			floors := make(plotter.Values, len(vs))
			for j, v := range vs {
				heights[j], floors[j] = max(0, v-floor), floor
			}
			var err error
			if base, err = plotter.NewBarChart(floors, barWidth); err != nil {
				return fmt.Errorf("chart: %w", err)
			}
		}
		bars, err := plotter.NewBarChart(heights, barWidth)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		if base != nil {
			bars.StackOn(base)
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = (vg.Length(i) - vg.Length(len(series)-1)/2) * barWidth
		p.Add(bars)
		p.Legend.Add(legend[i], bars)

		var xys plotter.XYs
		var texts []string
		for j, v := range vs {
			if v > 0 {
				xys = append(xys, plotter.XY{X: float64(j), Y: v})
				texts = append(texts, label(v))
			}
		}
		if len(xys) == 0 {
			continue
		}
		labels, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		for k := range labels.TextStyle {
			labels.TextStyle[k].XAlign = text.XCenter
			labels.TextStyle[k].Font.Size = vg.Points(8)
		}
		labels.Offset = vg.Point{X: bars.Offset, Y: vg.Points(2)}
		p.Add(labels)
	}
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	p.Add(grid)
	p.NominalX(categories...)
	// Half a category of margin on each side, and headroom for the labels and the
	// legend above the tallest bar.
	p.X.Min, p.X.Max = -0.5, float64(len(categories))-0.5
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		// Whole decades at both ends, so no tick falls outside the axis.
		p.Y.Min, p.Y.Max = floor, math.Pow(10, math.Ceil(math.Log10(max(top, floor)*3)))
	} else {
		p.Y.Tick.Marker = plainTicks{}
		p.Y.Min, p.Y.Max = 0, top*1.3
	}
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Title.Padding = vg.Points(6)
	p.Legend.Top = true
	p.Legend.Left = false
	return nil
}

func namesOf(rows []Row) (targets, drivers []string) {
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen["t:"+r.Target] {
			seen["t:"+r.Target] = true
			targets = append(targets, r.Target)
		}
		if !seen["d:"+r.Driver] {
			seen["d:"+r.Driver] = true
			drivers = append(drivers, r.Driver)
		}
	}
	return targets, drivers
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// plainTicks are gonum's default ticks labelled without trailing zeros ("75", not
// "75.00").
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'g', -1, 64)
		}
	}
	return ticks
}
