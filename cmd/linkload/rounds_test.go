package main

import (
	"math"
	"os"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		vs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{2.5, 0.9}, 1.7},
		{[]float64{1.8, 0.9, 1.2}, 1.2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.vs...)
		if got := median(tt.vs); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("median(%v) = %v, want %v", tt.vs, got, tt.want)
		}
		for i := range in {
			if in[i] != tt.vs[i] {
				t.Fatalf("median reordered its argument: %v, was %v", tt.vs, in)
			}
		}
	}
}

// compare -rounds 2 runs the comparison twice, each round on fresh
// servers, and reports per ratio the median and range of the two rounds.
func TestCompareRounds(t *testing.T) {
	out := compareTest(t)
	stdout, _ := runCmd(t, "compare", "-rounds", "2", "-linkwall", os.Args[0], "-users", "20", "-rooms", "2",
		"-group", "10", "-rate", "200", "-n", "100", "-q", "-json", out)
	rs := readReport[Rounds](t, out)
	if len(rs.Rounds) != 2 {
		t.Fatalf("%d rounds, want 2", len(rs.Rounds))
	}
	if rs.Rounds[0].Logs == rs.Rounds[1].Logs {
		t.Errorf("both rounds logged to %s; want fresh servers each round", rs.Rounds[0].Logs)
	}
	for i, c := range rs.Rounds {
		if c.Baseline == nil || c.Linkwall == nil {
			t.Fatalf("round %d: want both reports, got %+v", i+1, c)
		}
		checkDelivered(t, "baseline", c.Baseline.Load, 100, 10)
		checkDelivered(t, "linkwall", c.Linkwall.Load, 100, 10)
	}
	for _, k := range []string{"delivered_per_s", "p99"} {
		a, b := rs.Rounds[0].Ratios[k], rs.Rounds[1].Ratios[k]
		if a <= 0 || b <= 0 {
			t.Fatalf("ratio %s: rounds have %v and %v", k, a, b)
		}
		if got := rs.Median[k]; math.Abs(got-(a+b)/2) > 1e-9 {
			t.Errorf("median %s = %v, want %v (rounds %v, %v)", k, got, (a+b)/2, a, b)
		}
		if r := rs.Range[k]; r[0] != min(a, b) || r[1] != max(a, b) {
			t.Errorf("range %s = %v, want [%v %v]", k, r, min(a, b), max(a, b))
		}
	}
	if strings.Count(stdout, "=== round ") != 2 || !strings.Contains(stdout, "over 2 rounds: median [range]") {
		t.Errorf("want both rounds and the summary in:\n%s", stdout)
	}
}
