package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Rounds is compare -rounds N: the whole comparison N times in a row and,
// for each ratio, its median and range over the rounds that have it. The
// speed of a shared VM drifts by tens of percent within minutes, so one
// round can land the baseline in a fast spell and linkwall in a slow one
// (or the other way round); the median of several is the figure to quote.
type Rounds struct {
	Rounds []*Comparison         `json:"rounds"`
	Median map[string]float64    `json:"median_ratios_linkwall_over_baseline"`
	Range  map[string][2]float64 `json:"ratio_ranges"`
}

// runRounds runs o.rounds comparisons one after the other, each on its own
// fresh servers and data directory. It stops at the first round that fails.
func runRounds(ctx context.Context, o *options, stderr io.Writer) (*Rounds, error) {
	rs := &Rounds{}
	for i := range o.rounds {
		fmt.Fprintf(stderr, "[linkload] === round %d of %d\n", i+1, o.rounds)
		c, err := runCompare(ctx, o, stderr)
		if c != nil {
			rs.Rounds = append(rs.Rounds, c)
		}
		if err = errors.Join(err, ctx.Err()); err != nil {
			rs.summarize()
			return rs, fmt.Errorf("round %d: %w", i+1, err)
		}
	}
	rs.summarize()
	return rs, nil
}

// summarize fills in Median and Range from the rounds.
func (rs *Rounds) summarize() {
	rs.Median, rs.Range = map[string]float64{}, map[string][2]float64{}
	for _, k := range ratioNames {
		var vs []float64
		for _, c := range rs.Rounds {
			if v, ok := c.Ratios[k]; ok {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			continue
		}
		rs.Median[k] = median(vs)
		rs.Range[k] = [2]float64{slices.Min(vs), slices.Max(vs)}
	}
}

// median of vs (not empty), the mean of the middle two for an even count.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func printRounds(w io.Writer, rs *Rounds) {
	for i, c := range rs.Rounds {
		fmt.Fprintf(w, "=== round %d of %d\n", i+1, len(rs.Rounds))
		printComparison(w, c)
	}
	if len(rs.Median) == 0 {
		return
	}
	fmt.Fprintf(w, "=== linkwall / baseline over %d rounds: median [range]\n", len(rs.Rounds))
	for _, k := range ratioNames {
		if m, ok := rs.Median[k]; ok {
			r := rs.Range[k]
			fmt.Fprintf(w, "  %-40s %.2f× [%.2f–%.2f]\n", k, m, r[0], r[1])
		}
	}
}
