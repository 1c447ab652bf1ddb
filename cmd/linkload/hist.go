package main

import (
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// hist is a log-linear latency histogram in the spirit of HdrHistogram:
// 64 linear sub-buckets per power of two, so any recorded value is known to
// within 1/64 (≈1.6 %). Record is lock-free so every reader goroutine can
// share one histogram.
type hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	// Up to 2^37 ns (≈137 s); longer values land in the last bucket.
	histBuckets = histSub + (37-histSubBits)*histSub
)

func histIndex(v int64) int {
	if v < histSub {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits - 1
	i := histSub + shift*histSub + int(v>>shift) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper returns the largest value that lands in bucket i.
func histUpper(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := (i - histSub) / histSub
	sub := int64((i-histSub)%histSub + histSub)
	return (sub+1)<<shift - 1
}

// Record adds one latency.
func (h *hist) Record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)].Add(1)
	h.n.Add(1)
	if v > 0 {
		h.sum.Add(uint64(v))
	}
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Quantile returns the value at quantile q (0..1), rounded up to its
// bucket's upper bound and never above the maximum recorded.
func (h *hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if i := quantileBucket(q, n, func(i int) uint64 { return h.counts[i].Load() }); i >= 0 {
		return time.Duration(min(histUpper(i), h.max.Load()))
	}
	return time.Duration(h.max.Load())
}

// quantileBucket returns the bucket that holds quantile q of n values,
// count(i) giving bucket i's share; -1 if the counts add up to less.
func quantileBucket(q float64, n uint64, count func(i int) uint64) int {
	rank := max(uint64(q*float64(n)+0.5), 1)
	var seen uint64
	for i := range histBuckets {
		if seen += count(i); seen >= rank {
			return i
		}
	}
	return -1
}

// copyCounts copies h's bucket counts into dst, which holds histBuckets.
// Readers may record meanwhile: a copy is a moment's view to within the
// deliveries recorded while it was taken.
func (h *hist) copyCounts(dst []uint64) {
	for i := range h.counts {
		dst[i] = h.counts[i].Load()
	}
}

// sliceOf summarises the deliveries recorded between two copies of a
// histogram's counts (prev, then cur). Its maximum is the upper bound of
// the highest bucket that grew, so within 1/64 of the true one.
func sliceOf(at time.Duration, prev, cur []uint64) Slice {
	var n uint64
	top := -1
	for i := range cur {
		if d := cur[i] - prev[i]; d > 0 {
			n += d
			top = i
		}
	}
	s := Slice{AtS: at.Seconds(), Delivered: n}
	if n == 0 {
		return s
	}
	q := func(q float64) float64 {
		i := quantileBucket(q, n, func(i int) uint64 { return cur[i] - prev[i] })
		return ms(time.Duration(histUpper(i)))
	}
	s.P50Ms, s.P99Ms, s.MaxMs = q(0.5), q(0.99), ms(time.Duration(histUpper(top)))
	return s
}

// sliceSpread returns the median and the 90th percentile of a p99 (p99
// of a slice: end to end or to the socket) over the slices that received
// anything: the steady tail of a run, which one episode or a slow start
// moves much less than the run's own p99.
func sliceSpread(sl []Slice, p99 func(Slice) float64) (median, p90 float64) {
	var v []float64
	for _, s := range sl {
		if s.Delivered > 0 {
			v = append(v, p99(s))
		}
	}
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	return v[len(v)/2], v[len(v)*9/10]
}

// Slice is the latency of the deliveries received in one slice of a phase
// (-slices): where in a run the tail comes from, which a whole run's p99
// does not show (a late start, an episode).
type Slice struct {
	AtS       float64 `json:"end_s"` // the slice's end, from the phase's start
	Delivered uint64  `json:"delivered"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// SocketP99Ms is the p99 of the same deliveries' time to the socket
	// (phase.SocketLatency); 0 without timestamps.
	SocketP99Ms float64 `json:"socket_p99_ms,omitempty"`
}

// Latency is a histogram's summary in milliseconds, as reported.
type Latency struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Summary returns the percentiles of h.
func (h *hist) Summary() Latency {
	n := h.n.Load()
	l := Latency{Count: n}
	if n == 0 {
		return l
	}
	l.MeanMs = float64(h.sum.Load()) / float64(n) / 1e6
	l.P50Ms = ms(h.Quantile(0.50))
	l.P90Ms = ms(h.Quantile(0.90))
	l.P99Ms = ms(h.Quantile(0.99))
	l.P999Ms = ms(h.Quantile(0.999))
	l.MaxMs = ms(time.Duration(h.max.Load()))
	return l
}
