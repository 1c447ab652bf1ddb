package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // baseline-server -pprof
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/linkwall/linkwall/internal/baseline"
)

// Comparison is the same load against the baseline and linkwall, measured
// in one run, and linkwall/baseline ratios.
type Comparison struct {
	Baseline *Report            `json:"baseline,omitempty"`
	Linkwall *Report            `json:"linkwall,omitempty"`
	Ratios   map[string]float64 `json:"ratios_linkwall_over_baseline"`
	Logs     string             `json:"logs"`
}

// child is a server process started for the comparison.
type child struct {
	name string
	cmd  *exec.Cmd
	url  string
	exit chan error
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startChild runs a server and waits until its /healthz answers.
func startChild(ctx context.Context, name, addr, logPath string, bin string, args ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, url: "http://" + addr, exit: make(chan error, 1)}
	go func() {
		c.exit <- cmd.Wait()
		logf.Close()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(c.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		select {
		case err := <-c.exit:
			return nil, fmt.Errorf("%s exited before answering /healthz (%v); see %s", name, err, logPath)
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("%s did not answer /healthz within 30s; see %s", name, logPath)
		}
	}
}

// stop asks the child to shut down gracefully, then kills it.
func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exit:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exit
	}
}

// measureLoad runs the load phases against one server. With -max,
// linkwall also runs at the baseline's half-peak rate, if the baseline ran.
func measureLoad(ctx context.Context, o *options, c *child, base *Report, stderr io.Writer) (*Report, error) {
	cfg := o.load
	cfg.Target = c.url
	fmt.Fprintf(stderr, "[linkload] == %s at %s\n", c.name, c.url)
	var mc *maxConfig
	if o.max {
		m := o.mc
		if c.name == "linkwall" && base != nil && base.Max != nil && base.Max.HalfPeak != nil {
			m.Also = base.Max.HalfPeak.TargetRate
		}
		mc = &m
	}
	rep, err := runLoad(ctx, cfg, mc)
	if rep == nil {
		rep = &Report{Target: c.url}
	}
	rep.Server = c.name
	if err != nil {
		return rep, fmt.Errorf("%s load: %w", c.name, err)
	}
	return rep, nil
}

// wantsFresh reports whether a server needs the phases that measureFresh runs.
func wantsFresh(o *options, name string) bool {
	return o.idle > 0 || (o.resume && name == "linkwall")
}

// measureFresh runs the idle connections and, on linkwall, the resume
// against a server started for them. A process that has just carried the
// load keeps some of the memory it freed, and the idle connections reuse
// an amount that varies from run to run: linkwall's RSS grew by 0.8-3.8 KB
// per connection over six rounds after the load, by 2.6-2.7 KB in three on
// fresh processes.
func measureFresh(ctx context.Context, o *options, c *child, rep *Report, stderr io.Writer) error {
	var errs []error
	if o.idle > 0 && ctx.Err() == nil {
		fmt.Fprintf(stderr, "[linkload] %s: %d idle connections on a fresh process\n", c.name, o.idle)
		m, err := runIdle(ctx, protoV1, c.url, o.idle, o.idleUsers, o.load.UsersPerIP, o.settle, c.cmd.Process.Pid)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s idle: %w", c.name, err))
		}
		rep.Idle = m
	}
	if o.resume && c.name == "linkwall" && ctx.Err() == nil {
		fmt.Fprintf(stderr, "[linkload] %s: resume of %d messages\n", c.name, o.msgs)
		rc := o.load
		rc.Target = c.url
		rc.Rate = o.resumeRate
		rc.Users = 51
		rr, err := runResume(ctx, rc, o.msgs, o.reps)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s resume: %w", c.name, err))
		}
		rep.Resume = rr
	}
	return errors.Join(errs...)
}

// runCompare starts the baseline, measures it, stops it, then does the same
// with linkwall on a fresh data directory: the two never share the CPU.
func runCompare(ctx context.Context, o *options, stderr io.Writer) (*Comparison, error) {
	if o.linkwall == "" {
		return nil, errors.New("compare: need -linkwall BIN (go build -o /tmp/linkwall ./cmd/linkwall)")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "linkload-compare-")
	if err != nil {
		return nil, err
	}
	cmp := &Comparison{Logs: dir, Ratios: map[string]float64{}}
	fmt.Fprintf(stderr, "[linkload] server logs under %s\n", dir)

	type server struct {
		name string
		bin  string
		args func(addr string) []string
		dst  **Report
	}
	servers := []server{
		{"baseline", self, func(addr string) []string { return []string{"baseline-server", "-addr", addr} }, &cmp.Baseline},
		{"linkwall", o.linkwall, func(addr string) []string {
			return append([]string{"serve", "--addr", addr, "--data", filepath.Join(dir, "data")}, strings.Fields(o.lwArgs)...)
		}, &cmp.Linkwall},
	}
	if o.skipBase {
		servers = servers[1:]
	}
	var errs []error
	// run starts one server, runs f against it and stops it; it reports
	// whether the server started. The logs stay for diagnosis; linkwall's
	// database of the run does not.
	run := func(s server, log string, f func(*child) error) bool {
		addr, err := freeAddr()
		if err != nil {
			errs = append(errs, err)
			return false
		}
		c, err := startChild(ctx, s.name, addr, filepath.Join(dir, log), s.bin, s.args(addr)...)
		if err != nil {
			errs = append(errs, err)
			return false
		}
		if err := f(c); err != nil {
			errs = append(errs, err)
		}
		c.stop()
		os.RemoveAll(filepath.Join(dir, "data"))
		return true
	}
	for _, s := range servers {
		var rep *Report
		if !run(s, s.name+".log", func(c *child) (err error) {
			rep, err = measureLoad(ctx, o, c, cmp.Baseline, stderr)
			return err
		}) {
			continue
		}
		if wantsFresh(o, s.name) && ctx.Err() == nil {
			run(s, s.name+"-fresh.log", func(c *child) error { return measureFresh(ctx, o, c, rep, stderr) })
		}
		*s.dst = rep
		if ctx.Err() != nil {
			break
		}
	}
	cmp.ratios()
	return cmp, errors.Join(errs...)
}

func (c *Comparison) ratios() {
	b, l := c.Baseline, c.Linkwall
	if b == nil || l == nil {
		return
	}
	put := func(name string, lw, base float64) {
		if base != 0 {
			c.Ratios[name] = lw / base
		}
	}
	if b.Load != nil && l.Load != nil {
		put("delivered_per_s", l.Load.DeliveredPerSec, b.Load.DeliveredPerSec)
		if clean(b.Load) && clean(l.Load) {
			put("p99", l.Load.Latency.P99Ms, b.Load.Latency.P99Ms)
			// Only at the same rate: coalescing makes a delivery cheaper
			// the busier a connection is, so half peaks do not compare.
			put("deliveries_per_cpu_s", l.Load.DeliveriesPerCPUSecond, b.Load.DeliveriesPerCPUSecond)
		}
	}
	if b.Max != nil && l.Max != nil {
		put("peak_delivered_per_s", l.Max.PeakDeliveredPerSec, b.Max.PeakDeliveredPerSec)
		// Latency is only comparable when both runs delivered everything.
		if clean(b.Max.HalfPeak) && clean(l.Max.HalfPeak) {
			put("half_peak_p99", l.Max.HalfPeak.Latency.P99Ms, b.Max.HalfPeak.Latency.P99Ms)
			put("half_peak_slice_p99_median", l.Max.HalfPeak.SliceP99MedianMs, b.Max.HalfPeak.SliceP99MedianMs)
			if ls, bs := l.Max.HalfPeak.SocketLatency, b.Max.HalfPeak.SocketLatency; ls != nil && bs != nil {
				put("half_peak_socket_p99", ls.P99Ms, bs.P99Ms)
			}
		}
		// The same load for both: linkwall at the baseline's half peak.
		if clean(b.Max.HalfPeak) && clean(l.Max.Also) && l.Max.Also.TargetRate == b.Max.HalfPeak.TargetRate {
			put("p99_at_baseline_half_peak", l.Max.Also.Latency.P99Ms, b.Max.HalfPeak.Latency.P99Ms)
			put("slice_p99_median_at_baseline_half_peak", l.Max.Also.SliceP99MedianMs, b.Max.HalfPeak.SliceP99MedianMs)
			if ls, bs := l.Max.Also.SocketLatency, b.Max.HalfPeak.SocketLatency; ls != nil && bs != nil {
				put("socket_p99_at_baseline_half_peak", ls.P99Ms, bs.P99Ms)
			}
		}
	}
	if b.Idle != nil && l.Idle != nil {
		put("idle_rss_per_conn", l.Idle.RSSPerConn, b.Idle.RSSPerConn)
		put("idle_heap_per_conn", l.Idle.HeapPerConn, b.Idle.HeapPerConn)
	}
}

// ratioNames are the ratios a comparison can have, in the order printed.
var ratioNames = []string{"delivered_per_s", "p99", "deliveries_per_cpu_s", "peak_delivered_per_s",
	"half_peak_p99", "half_peak_slice_p99_median", "half_peak_socket_p99", "p99_at_baseline_half_peak",
	"slice_p99_median_at_baseline_half_peak", "socket_p99_at_baseline_half_peak", "idle_rss_per_conn", "idle_heap_per_conn"}

func clean(p *phase) bool {
	return p != nil && p.Dropped == 0 && p.ClientsDropped == 0 && p.Rejected == 0
}

func printComparison(w io.Writer, c *Comparison) {
	for _, r := range []*Report{c.Baseline, c.Linkwall} {
		if r != nil {
			printReport(w, r)
		}
	}
	if len(c.Ratios) > 0 {
		fmt.Fprintln(w, "== linkwall / baseline")
		for _, k := range ratioNames {
			if v, ok := c.Ratios[k]; ok {
				fmt.Fprintf(w, "  %-40s %.2f×\n", k, v)
			}
		}
	}
}

// serveBaseline runs internal/baseline until ctx ends, printing its address
// first so a parent can find it.
func serveBaseline(ctx context.Context, addr, pprofAddr string, stdout, stderr io.Writer) error {
	log := zap.NewNop()
	s := baseline.New(log)
	defer s.Close()
	if pprofAddr != "" {
		// net/http/pprof registers on http.DefaultServeMux only.
		pl, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			return err
		}
		defer pl.Close()
		go http.Serve(pl, http.DefaultServeMux)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	bw := bufio.NewWriter(stdout)
	fmt.Fprintf(bw, "baseline listening on http://%s\n", ln.Addr())
	bw.Flush()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
