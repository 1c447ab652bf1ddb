package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/zap"

	"github.com/linkwall/linkwall/internal/baseline"
)

// asMain makes the test binary act as linkload itself, so that compare can
// start it as a child: as "baseline-server", and as a stand-in for
// "linkwall serve --addr A --data D" (which it answers with the baseline).
const asMain = "LINKLOAD_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		args := os.Args[1:]
		if len(args) > 2 && args[0] == "serve" && args[1] == "--addr" {
			args = []string{"baseline-server", "-addr", args[2]}
		}
		ctx, stop := signalContext()
		defer stop()
		os.Exit(run(ctx, args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// compareTest prepares a test that runs compare: the test binary stands in
// for both servers, compare keeps its server logs in a temporary TMPDIR,
// and the JSON report goes to the path it returns.
func compareTest(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Setenv(asMain, "1")
	t.Setenv("TMPDIR", t.TempDir())
	return filepath.Join(t.TempDir(), "c.json")
}

func startBaseline(t *testing.T) string {
	t.Helper()
	s := baseline.New(zap.NewNop())
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return hs.URL
}

// runOnBaseline runs linkload with args against a baseline server of its
// own and returns the JSON report it wrote.
func runOnBaseline(t *testing.T, args ...string) (r Report, stdout, stderr string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "r.json")
	stdout, stderr = runCmd(t, append(args, "-url", startBaseline(t), "-json", out)...)
	return readReport[Report](t, out), stdout, stderr
}

func runCmd(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if rc := run(ctx, args, &out, &errb); rc != 0 {
		t.Fatalf("linkload %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, rc, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

func readReport[T any](t *testing.T, path string) T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// checkDelivered asserts that every message reached every member once.
func checkDelivered(t *testing.T, name string, p *phase, msgs, members int64) {
	t.Helper()
	if p == nil {
		t.Fatalf("%s: no phase in the report", name)
	}
	if msgs > 0 && p.Sent != msgs {
		t.Errorf("%s: sent %d, want %d", name, p.Sent, msgs)
	}
	if p.Sent == 0 || p.Acked != p.Sent || p.Rejected != 0 {
		t.Errorf("%s: sent %d acked %d rejected %d, want every send acknowledged", name, p.Sent, p.Acked, p.Rejected)
	}
	if p.Expected != p.Sent*members || p.Received != p.Expected || p.Dropped != 0 {
		t.Errorf("%s: expected %d received %d dropped %d, want %d×%d deliveries", name, p.Expected, p.Received, p.Dropped, p.Sent, members)
	}
	if p.Duplicates != 0 || p.Stray != 0 || p.ClientsDropped != 0 {
		t.Errorf("%s: duplicates %d stray %d clients dropped %d", name, p.Duplicates, p.Stray, p.ClientsDropped)
	}
	if p.Latency.Count != uint64(p.Received) || p.Latency.P50Ms <= 0 || p.Latency.P99Ms < p.Latency.P50Ms || p.Latency.MaxMs < p.Latency.P99Ms {
		t.Errorf("%s: latency %+v does not describe %d deliveries", name, p.Latency, p.Received)
	}
	if p.DeliveredPerSec <= 0 {
		t.Errorf("%s: delivered/s %v", name, p.DeliveredPerSec)
	}
}

func TestLoadDeliversEveryMessageToEveryMember(t *testing.T) {
	// 25 users in 3 rooms of 10: the rooms overlap, so some users get
	// messages of two rooms and must not count them as strays.
	r, stdout, stderr := runOnBaseline(t, "-users", "25", "-rooms", "3", "-group", "10",
		"-rate", "200", "-n", "300", "-d", "10s")
	checkDelivered(t, "load", r.Load, 300, 10)
	if r.Config == nil || r.Config.Conns != 25 || r.Config.Senders != 25 {
		t.Errorf("config %+v, want 25 connections and senders", r.Config)
	}
	if r.Connect == nil || r.Connect.RSSAfter <= 0 || r.Connect.HeapAfter <= 0 || r.Connect.Conns != 25 {
		t.Errorf("connect memory %+v, want figures from /metrics", r.Connect)
	}
	if r.Load.ServerAppendMs != 0 || r.Load.ServerSendMs != 0 {
		t.Errorf("server means %v / %vms from a baseline, which has no store", r.Load.ServerAppendMs, r.Load.ServerSendMs)
	}
	if r.Load.ServerCores <= 0 || r.Load.DeliveriesPerCPUSecond <= 0 || r.Load.ClientCores <= 0 {
		t.Errorf("CPU figures missing: server %v cores (%v deliveries/CPU s), linkload %v cores",
			r.Load.ServerCores, r.Load.DeliveriesPerCPUSecond, r.Load.ClientCores)
	}
	if runtime.GOOS == "linux" {
		// The machine's busy time includes linkload's own, and cannot pass its cores.
		m := r.Load
		if m.MachineCores <= 0 || m.MachineBusyCores < m.ClientCores/2 || m.MachineBusyCores > float64(m.MachineCores)+0.1 {
			t.Errorf("machine: %v of %d cores busy, linkload alone used %v", m.MachineBusyCores, m.MachineCores, m.ClientCores)
		}
		if !strings.Contains(stdout, "cores busy") {
			t.Errorf("want the machine's CPU in the summary; stdout:\n%s", stdout)
		}
	}
	if !strings.Contains(stdout, "dropped 0") || !strings.Contains(stderr, "[linkload]") {
		t.Errorf("want a summary and progress lines; stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

func TestMaxRampsThenRunsAtHalfPeak(t *testing.T) {
	r, _, _ := runOnBaseline(t, "-users", "20", "-rooms", "2", "-group", "10", "-max",
		"-max-start", "50", "-max-factor", "2", "-max-rate", "100", "-max-step", "400ms", "-d", "500ms",
		"-max-also", "30", "-warmup", "200ms", "-q")
	m := r.Max
	// The baseline keeps up with 100 msgs/s easily, but a loaded machine
	// may starve the pacer; what must hold either way is the ramp's logic.
	if m == nil || len(m.Steps) == 0 || m.PeakRate == 0 || m.PeakDeliveredPerSec <= 0 || m.LimitedBy == "" {
		t.Fatalf("max %+v, want a peak and why the ramp stopped", m)
	}
	// A step that failed without losing anything is tried once more, and
	// its last try is what counts: every rate up to the peak passed then.
	last := map[float64]phase{}
	for _, p := range m.Steps {
		last[p.TargetRate] = p
	}
	for rate, p := range last {
		if rate <= m.PeakRate && verdict(p) != "" {
			t.Errorf("step at %v msgs/s failed (%s) but the peak is %v", rate, verdict(p), m.PeakRate)
		}
	}
	if m.PeakRate == 100 && m.LimitedBy != "rate limit of the ramp (-max-rate)" {
		t.Errorf("limited by %q at the ramp's top rate", m.LimitedBy)
	}
	checkDelivered(t, "half peak", m.HalfPeak, 0, 10)
	if m.HalfPeak.TargetRate != m.PeakRate/2 {
		t.Errorf("half peak ran at %v msgs/s, want %v", m.HalfPeak.TargetRate, m.PeakRate/2)
	}
	checkDelivered(t, "also", m.Also, 0, 10)
	if m.Also.TargetRate != 30 {
		t.Errorf("-max-also ran at %v msgs/s, want 30", m.Also.TargetRate)
	}
	// Both run on fresh connections, each after its own warm-up; the
	// ramp's steps run on warm ones and have none.
	for name, p := range map[string]*phase{"half peak": m.HalfPeak, "also": m.Also} {
		if w := p.Warmup; w == nil || w.TargetRate != p.TargetRate || w.Sent == 0 {
			t.Errorf("%s: warm-up %+v, want one at %v msgs/s", name, w, p.TargetRate)
		}
	}
	for _, p := range m.Steps {
		if p.Warmup != nil {
			t.Errorf("ramp step at %v msgs/s has a warm-up", p.TargetRate)
		}
	}
}

func TestWarmupIsReportedApart(t *testing.T) {
	r, stdout, _ := runOnBaseline(t, "-users", "20", "-rooms", "2", "-group", "10",
		"-rate", "400", "-n", "200", "-d", "10s", "-warmup", "300ms")
	// The measured phase holds its own 200 messages only, every one
	// delivered; the warm-up's are counted in the warm-up.
	checkDelivered(t, "load", r.Load, 200, 10)
	w := r.Load.Warmup
	if w == nil {
		t.Fatal("no warm-up in the report")
	}
	if w.Sent < 60 || w.Sent > 120 || w.Received != w.Expected || w.Expected != w.Sent*10 {
		t.Errorf("warm-up sent %d (want 120 at 400 msgs/s for 300ms, at least half of it), expected %d, received %d",
			w.Sent, w.Expected, w.Received)
	}
	if w.Latency.Count != uint64(w.Received) || r.Load.Latency.Count != uint64(r.Load.Received) {
		t.Errorf("latency counts %d and %d, want %d and %d: the phases' histograms are apart",
			w.Latency.Count, r.Load.Latency.Count, w.Received, r.Load.Received)
	}
	if !strings.Contains(stdout, "warm-up (not counted)") {
		t.Errorf("want the warm-up in the summary; stdout:\n%s", stdout)
	}
}

func TestIdleReportsMemoryPerConnection(t *testing.T) {
	r, _, _ := runOnBaseline(t, "idle", "-conns", "60", "-idle-users", "20", "-settle", "100ms")
	if r.Idle == nil || r.Idle.Conns != 60 || r.Idle.HelloMissing != 0 || r.Idle.RSSAfter <= 0 || r.Idle.HeapAfter <= 0 || r.Idle.Goroutines < 120 {
		t.Errorf("idle %+v, want 60 connections with a hello each and memory figures", r.Idle)
	}
}

func TestCompareRunsBothServersAsChildren(t *testing.T) {
	out := compareTest(t)
	stdout, _ := runCmd(t, "compare", "-linkwall", os.Args[0], "-users", "20", "-rooms", "2", "-group", "10",
		"-rate", "200", "-n", "100", "-idle", "40", "-settle", "100ms", "-q", "-json", out)
	c := readReport[Comparison](t, out)
	if c.Baseline == nil || c.Linkwall == nil {
		t.Fatalf("want both reports, got %+v", c)
	}
	checkDelivered(t, "baseline", c.Baseline.Load, 100, 10)
	checkDelivered(t, "linkwall", c.Linkwall.Load, 100, 10)
	for _, k := range []string{"delivered_per_s", "p99", "idle_rss_per_conn"} {
		if c.Ratios[k] <= 0 {
			t.Errorf("ratio %s = %v", k, c.Ratios[k])
		}
	}
	if !strings.Contains(stdout, "linkwall / baseline") {
		t.Errorf("no ratio table in:\n%s", stdout)
	}
	// The idle connections are measured on a server process of their own,
	// not on the one that has just carried the load.
	for name, r := range map[string]*Report{"baseline": c.Baseline, "linkwall": c.Linkwall} {
		if r.Idle == nil || r.Idle.Conns != 40 {
			t.Errorf("%s idle: %+v, want 40 connections", name, r.Idle)
		}
		if _, err := os.Stat(filepath.Join(c.Logs, name+"-fresh.log")); err != nil {
			t.Errorf("%s: no second server process for the idle connections: %v", name, err)
		}
	}
}

// With -max, compare also runs linkwall at the baseline's half-peak rate,
// so that the two latencies are compared at the same load as well.
func TestCompareMaxAlsoRunsLinkwallAtTheBaselinesHalfPeak(t *testing.T) {
	out := compareTest(t)
	runCmd(t, "compare", "-linkwall", os.Args[0], "-users", "20", "-rooms", "2", "-group", "10", "-max",
		"-max-start", "40", "-max-factor", "2", "-max-rate", "80", "-max-step", "400ms", "-d", "500ms",
		"-slices", "100ms", "-socket-time", "-q", "-json", out)
	c := readReport[Comparison](t, out)
	if c.Baseline == nil || c.Baseline.Max == nil || c.Linkwall == nil || c.Linkwall.Max == nil {
		t.Fatalf("want both ramps, got %+v", c)
	}
	if c.Baseline.Max.Also != nil {
		t.Errorf("the baseline ran an extra phase at %v msgs/s", c.Baseline.Max.Also.TargetRate)
	}
	bh := c.Baseline.Max.HalfPeak
	checkDelivered(t, "baseline half peak", bh, 0, 10)
	checkDelivered(t, "linkwall at the baseline's half peak", c.Linkwall.Max.Also, 0, 10)
	if got := c.Linkwall.Max.Also.TargetRate; got != bh.TargetRate {
		t.Errorf("linkwall's extra phase ran at %v msgs/s, want the baseline's half peak %v", got, bh.TargetRate)
	}
	want := []string{"p99_at_baseline_half_peak", "half_peak_slice_p99_median", "slice_p99_median_at_baseline_half_peak"}
	if runtime.GOOS == "linux" { // receive timestamps
		want = append(want, "half_peak_socket_p99", "socket_p99_at_baseline_half_peak")
	}
	for _, k := range want {
		if c.Ratios[k] <= 0 {
			t.Errorf("no ratio %s in %v", k, c.Ratios)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	for v := 1; v <= 100000; v++ {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 50 * time.Millisecond},
		{0.9, 90 * time.Millisecond},
		{0.99, 99 * time.Millisecond},
		{1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		got := h.Quantile(tt.q)
		if got < tt.want || float64(got) > float64(tt.want)*(1+1.0/histSub) {
			t.Errorf("q%v = %v, want %v within 1/%d above", tt.q, got, tt.want, histSub)
		}
	}
	if s := h.Summary(); s.Count != 100000 || s.MaxMs != 100 || s.MeanMs < 50 || s.MeanMs > 50.01 {
		t.Errorf("summary %+v", s)
	}
}

func TestSliceOfCountsOnlyWhatArrivedBetweenCopies(t *testing.T) {
	var h hist
	prev, cur := make([]uint64, histBuckets), make([]uint64, histBuckets)
	// The first slice: 1–100 ms. Its values must not leak into the second.
	for v := 1; v <= 1000; v++ {
		h.Record(time.Duration(v) * 100 * time.Microsecond)
	}
	h.copyCounts(cur)
	first := sliceOf(100*time.Millisecond, prev, cur)
	prev, cur = cur, prev
	// The second: 200–300 ms, a late stretch.
	for v := 0; v < 1000; v++ {
		h.Record(200*time.Millisecond + time.Duration(v)*100*time.Microsecond)
	}
	h.copyCounts(cur)
	second := sliceOf(200*time.Millisecond, prev, cur)
	prev, cur = cur, prev
	h.copyCounts(cur)
	empty := sliceOf(300*time.Millisecond, prev, cur)

	within := func(name string, got float64, want time.Duration) {
		t.Helper()
		w := ms(want)
		if got < w || got > w*(1+1.0/histSub)+0.001 {
			t.Errorf("%s = %vms, want %vms within 1/%d above", name, got, w, histSub)
		}
	}
	if first.Delivered != 1000 || first.AtS != 0.1 {
		t.Errorf("first slice %+v, want 1000 deliveries ending at 0.1s", first)
	}
	within("first p50", first.P50Ms, 50*time.Millisecond)
	within("first p99", first.P99Ms, 99*time.Millisecond)
	within("first max", first.MaxMs, 100*time.Millisecond)
	if second.Delivered != 1000 {
		t.Errorf("second slice %+v, want 1000 deliveries", second)
	}
	within("second p50", second.P50Ms, 250*time.Millisecond)
	within("second p99", second.P99Ms, 299*time.Millisecond)
	if empty != (Slice{AtS: 0.3}) {
		t.Errorf("a slice without deliveries is %+v", empty)
	}
}

func TestSliceSpread(t *testing.T) {
	mk := func(p99s ...float64) []Slice {
		var sl []Slice
		for _, v := range p99s {
			sl = append(sl, Slice{Delivered: 1, P99Ms: v})
		}
		return sl
	}
	tests := []struct {
		name     string
		sl       []Slice
		med, p90 float64
	}{
		{"none", nil, 0, 0},
		{"one", mk(7), 7, 7},
		{"ten, unsorted", mk(10, 1, 9, 2, 8, 3, 7, 4, 6, 5), 6, 10},
		{"an episode moves neither", mk(20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 400), 30, 38},
		{"empty slices are left out", append(mk(5, 6, 7), Slice{P99Ms: 0}, Slice{P99Ms: 0}), 6, 7},
	}
	for _, tt := range tests {
		if med, p90 := sliceSpread(tt.sl, func(s Slice) float64 { return s.P99Ms }); med != tt.med || p90 != tt.p90 {
			t.Errorf("%s: median %v, 90th percentile %v; want %v, %v", tt.name, med, p90, tt.med, tt.p90)
		}
	}
}

func TestLoadSlicesCoverEveryDelivery(t *testing.T) {
	r, stdout, _ := runOnBaseline(t, "-users", "20", "-rooms", "2", "-group", "10",
		"-rate", "400", "-d", "1s", "-slices", "100ms")
	checkDelivered(t, "load", r.Load, 0, 10)
	sl := r.Load.Slices
	// 1 s of sending and the drain, in slices of 0.1 s.
	if len(sl) < 10 || len(sl) > 20 {
		t.Fatalf("%d slices for a 1s run in slices of 100ms: %+v", len(sl), sl)
	}
	var n uint64
	for i, s := range sl {
		n += s.Delivered
		if i > 0 && s.AtS <= sl[i-1].AtS {
			t.Errorf("slice %d ends at %vs, not after the one before (%vs)", i, s.AtS, sl[i-1].AtS)
		}
		if s.Delivered > 0 && (s.P50Ms <= 0 || s.P99Ms < s.P50Ms || s.MaxMs < s.P99Ms || s.MaxMs > r.Load.Latency.MaxMs*(1+1.0/histSub)) {
			t.Errorf("slice %d: %+v does not fit the phase's latency %+v", i, s, r.Load.Latency)
		}
	}
	if int64(n) != r.Load.Received {
		t.Errorf("slices hold %d deliveries, the phase received %d", n, r.Load.Received)
	}
	if r.Load.SocketLatency != nil || r.Load.SocketSliceP99MedianMs != 0 {
		t.Errorf("socket latency without -socket-time: %+v", r.Load.SocketLatency)
	}
	med, p90 := r.Load.SliceP99MedianMs, r.Load.SliceP99P90Ms
	if med <= 0 || p90 < med || med > r.Load.Latency.MaxMs*(1+1.0/histSub) {
		t.Errorf("slices' p99: median %v, 90th percentile %v, for a phase with latency %+v", med, p90, r.Load.Latency)
	}
	if !strings.Contains(stdout, "slices of 0.1s: median") {
		t.Errorf("want the slices in the summary; stdout:\n%s", stdout)
	}
}

func TestHistIndexIsMonotonic(t *testing.T) {
	prev := 0
	for v := int64(0); v < 1<<40; v = v*5/4 + 1 {
		i := histIndex(v)
		if i < prev || v > histUpper(i) && i != histBuckets-1 {
			t.Fatalf("value %d: bucket %d (upper %d) after bucket %d", v, i, histUpper(i), prev)
		}
		prev = i
	}
}

func TestParseMarker(t *testing.T) {
	tests := []struct {
		in    string
		room  int
		n, ts int64
		ok    bool
	}{
		{"1~42~123456789] hello", 1, 42, 123456789, true},
		{"0~0~1]", 0, 0, 1, true},
		{"1~42~123", 0, 0, 0, false},
		{"~42~1]", 0, 0, 0, false},
		{"a~42~1]", 0, 0, 0, false},
		{"1~42]", 0, 0, 0, false},
		{"", 0, 0, 0, false},
		{"12345678901234567890~1~1]", 0, 0, 0, false}, // past int64: refused, not wrapped
	}
	for _, tt := range tests {
		room, n, ts, ok := parseMarker([]byte(tt.in))
		if ok != tt.ok || room != tt.room || n != tt.n || ts != tt.ts {
			t.Errorf("parseMarker(%q) = %d %d %d %v, want %d %d %d %v", tt.in, room, n, ts, ok, tt.room, tt.n, tt.ts, tt.ok)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := "# HELP process_resident_memory_bytes Resident memory size in bytes.\n" +
		"# TYPE process_resident_memory_bytes gauge\n" +
		"process_resident_memory_bytes 1.2345e+07\n" +
		"go_memstats_heap_inuse_bytes 4096\n" +
		"go_memstats_heap_inuse_bytes_total 1\n" +
		`http_requests{code="200"} 5` + "\n"
	got := parseMetrics([]byte(text), "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_goroutines")
	if len(got) != 2 || got["process_resident_memory_bytes"] != 12345000 || got["go_memstats_heap_inuse_bytes"] != 4096 {
		t.Errorf("parseMetrics = %v", got)
	}
}

func TestMeanMs(t *testing.T) {
	m := func(sum, count float64) map[string]float64 {
		return map[string]float64{appendSum: sum, appendCount: count}
	}
	for _, tc := range []struct {
		name          string
		before, after map[string]float64
		want          float64
	}{
		{"mean of the phase only", m(1.0, 100), m(1.5, 300), 2.5},
		{"nothing observed", m(1.0, 100), m(1.0, 100), 0},
		{"no such histogram (the baseline)", map[string]float64{}, map[string]float64{}, 0},
		{"missing before", map[string]float64{}, m(1.5, 300), 0},
	} {
		if got := meanMs(tc.before, tc.after, appendSum, appendCount); got != tc.want {
			t.Errorf("%s: meanMs = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A frame from a server, however malformed, never panics the reader and
// never counts as a delivery unless it carries a well-formed marker of
// this run for a room of the client.
func FuzzLine(f *testing.F) {
	f.Add([]byte(`{"type":"message","message":{"text":"[lw~abc~0~1~5] hi"},"client_msg_id":"abc-0-1"}`))
	f.Add([]byte(`{"type":"error","code":"rate_limited","ref":"abc-1-9"}`))
	f.Add([]byte(`{"type":"hello","user":{}}`))
	f.Add([]byte(`[lw~abc~0~99999999999999999999~1]`))
	f.Add([]byte(`{"push":{"channel":"lwabc-room-0","pub":{"data":{"text":"[lw~abc~0~1~5] hi"},"offset":2}}}`))
	f.Add([]byte(`{"id":65539,"publish":{}}`))
	f.Add([]byte(`{"id":65536,"error":{"code":103,"message":"permission denied"}}`))
	f.Add([]byte(`{"id":2,"subscribe":{}}`))
	f.Add([]byte(`{"id":99999999999,"publish":{}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, proto := range []string{protoV1, protoCentrifugo} {
			if proto == protoCentrifugo && bytes.Equal(line, cfPing) {
				continue // answered on the connection, which this test has not
			}
			l := &load{cfg: loadConfig{Protocol: proto, Rooms: 2}, run: "abc", marker: []byte("[lw~abc~"),
				connected: []int64{3, 3}, errs: map[string]int64{}, closes: map[string]int64{}}
			l.issued.Store(100)
			l.lat.Store(new(hist))
			c := &wsClient{l: l, inRoom: []bool{true, false}, hello: make(chan struct{}), helloID: 2}
			c.line(line, 10, 0)
			c.line(line, 10, 0)
			if got := l.received.Load(); got > 1 {
				t.Fatalf("%s: one line counted %d times", proto, got)
			}
			if l.received.Load() == 1 && (l.dups.Load() != 1 || !bytes.Contains(line, []byte("[lw~abc~0~"))) {
				t.Fatalf("%s: delivery counted without a marker for room 0, or repeat not a duplicate", proto)
			}
			if a, r := l.acked.Load(), l.rejected.Load(); a > 2 || r > 2 || (a > 0 && r > 0) {
				t.Fatalf("%s: one line twice gave %d acks and %d rejections", proto, a, r)
			}
			if r := l.rejected.Load(); l.expected.Load() != -3*r {
				t.Fatalf("%s: %d rejections took %d from the expected deliveries, want %d", proto, r, -l.expected.Load(), 3*r)
			}
		}
	})
}

func TestVerdict(t *testing.T) {
	ok := phase{TargetRate: 100, SendRate: 99, DrainMs: 3, Latency: Latency{P99Ms: 5}}
	tests := []struct {
		name string
		edit func(*phase)
		want string
	}{
		{"keeps up", func(*phase) {}, ""},
		{"client dropped", func(p *phase) { p.ClientsDropped = 1 }, "clients dropped"},
		{"lost", func(p *phase) { p.Dropped = 1 }, "deliveries lost or late beyond drain"},
		{"rejected", func(p *phase) { p.Rejected = 1 }, "sends rejected"},
		{"duplicate", func(p *phase) { p.Duplicates = 1 }, "duplicate or stray deliveries"},
		{"pacer behind", func(p *phase) { p.SendRate = 90 }, "senders could not write at the target rate"},
		{"slow drain", func(p *phase) { p.DrainMs = 300 }, "deliveries fell behind"},
		{"slow p99", func(p *phase) { p.Latency.P99Ms = 600 }, "deliveries fell behind"},
	}
	for _, tt := range tests {
		p := ok
		tt.edit(&p)
		if got := verdict(p); got != tt.want {
			t.Errorf("%s: verdict %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestLineCounts checks what one object counts as: a delivery, the
// sender's acknowledgement, LinkBot's message, or a quote of ours.
func TestLineCounts(t *testing.T) {
	tests := []struct {
		name                 string
		line                 string
		received, acked, bot int64
		other                int64
	}{
		{"delivery", `{"type":"message","message":{"sender":{"id":"u"},"text":"[lw~abc~0~1~5] hi"}}`, 1, 0, 0, 0},
		{"sender's copy", `{"type":"message","message":{"sender":{"id":"u"},"text":"[lw~abc~0~1~5] hi"},"client_msg_id":"abc-0-1"}`, 1, 1, 0, 0},
		{"another message's id", `{"type":"message","message":{"text":"[lw~abc~0~1~5] hi"},"client_msg_id":"abc-0-12"}`, 1, 0, 0, 0},
		{"LinkBot quoting", `{"type":"message","message":{"sender":{"id":"` + linkBotID + `"},"text":"you said [lw~abc~0~1~5] hi"}}`, 0, 0, 1, 0},
		{"someone quoting", `{"type":"message","message":{"sender":{"id":"u"},"text":"re: [lw~abc~0~1~5] hi"}}`, 0, 0, 0, 1},
		{"LinkBot's notice", `{"type":"message","message":{"sender":{"id":"` + linkBotID + `"},"text":"copy the address"}}`, 0, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &load{run: "abc", marker: []byte("[lw~abc~"), connected: []int64{3},
				errs: map[string]int64{}, closes: map[string]int64{}}
			l.issued.Store(100)
			l.lat.Store(new(hist))
			c := &wsClient{l: l, inRoom: []bool{true}, hello: make(chan struct{})}
			c.line([]byte(tt.line), 10, 0)
			got := [4]int64{l.received.Load(), l.acked.Load(), l.botMsgs.Load(), l.otherMsgs.Load()}
			if want := [4]int64{tt.received, tt.acked, tt.bot, tt.other}; got != want {
				t.Errorf("received, acked, bot, other = %v, want %v", got, want)
			}
		})
	}
}

func TestReadFrameSplitsObjectsAcrossReads(t *testing.T) {
	var frame bytes.Buffer
	const msgs = 300
	for n := range msgs {
		if n > 0 {
			frame.WriteByte('\n')
		}
		fmt.Fprintf(&frame, `{"type":"message","message":{"text":"[lw~abc~0~%d~5] hi"}}`, n)
	}
	for _, tt := range []struct {
		name string
		r    func([]byte) io.Reader
		size int
	}{
		{"one byte a read", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }, 64},
		{"half a read", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }, 256},
		{"objects larger than the buffer", func(b []byte) io.Reader { return bytes.NewReader(b) }, 8},
		{"data with EOF", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }, 1 << 10},
	} {
		l := &load{run: "abc", marker: []byte("[lw~abc~"), connected: []int64{1},
			errs: map[string]int64{}, closes: map[string]int64{}}
		l.issued.Store(msgs)
		l.lat.Store(new(hist))
		c := &wsClient{l: l, inRoom: []bool{true}, hello: make(chan struct{})}
		buf := make([]byte, tt.size)
		if err := c.readFrame(tt.r(frame.Bytes()), &buf); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := l.received.Load(); got != msgs || l.dups.Load() != 0 || l.otherMsgs.Load() != 0 {
			t.Errorf("%s: received %d, duplicates %d, other %d; want %d, 0, 0", tt.name, got, l.dups.Load(), l.otherMsgs.Load(), msgs)
		}
	}
	l := &load{run: "abc", marker: []byte("[lw~abc~"), errs: map[string]int64{}, closes: map[string]int64{}}
	c := &wsClient{l: l}
	buf := make([]byte, 64)
	if err := c.readFrame(iotest.ErrReader(io.ErrUnexpectedEOF), &buf); err != io.ErrUnexpectedEOF {
		t.Errorf("a failing read gave %v, want io.ErrUnexpectedEOF", err)
	}
}
