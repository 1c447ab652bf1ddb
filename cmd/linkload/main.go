package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `usage:
  linkload [load]  -url URL [-protocol v1|centrifugo] [-users U -rooms R -group G -senders S -rate M -d DUR -n COUNT] [-max] [-warmup DUR] [-slices DUR] [-socket-time] [-json FILE]
  linkload idle    -url URL [-protocol v1|centrifugo] -conns N [-idle-users K] [-json FILE]
  linkload resume  -url URL [-msgs 1000 -senders S -rate M -reps 5] [-json FILE]
  linkload compare -linkwall BIN [load flags] [-max] [-idle N] [-resume] [-rounds N] [-json FILE]
  linkload baseline-server -addr HOST:PORT
  linkload centrifugo-config -addr HOST:PORT   (a Centrifugo v6 config for -protocol centrifugo)
run 'linkload COMMAND -h' for the flags
`

func main() {
	ctx, stop := signalContext()
	defer stop()
	if err := raiseNofile(); err != nil {
		fmt.Fprintln(os.Stderr, "linkload: cannot raise the open-file limit:", err)
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// signalContext ends on SIGINT or SIGTERM, so that child servers and
// connections are closed on the way out.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// raiseNofile lifts the soft limit on open files to the hard limit: each
// connection is a file, and child servers inherit the limit.
func raiseNofile() error {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
	return nil
}

// options are the flags of every subcommand; each uses the ones it needs.
type options struct {
	load       loadConfig
	max        bool
	mc         maxConfig
	jsonFile   string
	idle       int
	idleUsers  int
	settle     time.Duration
	resume     bool
	msgs       int
	reps       int
	linkwall   string
	lwArgs     string
	addr       string
	pprof      string
	cpuProfile string
	quiet      bool
	skipBase   bool
	resumeRate float64
	rounds     int
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("linkload "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.load.Target, "url", "http://127.0.0.1:8080", "target server")
	fs.StringVar(&o.load.Protocol, "protocol", protoV1, "load, idle: the target's protocol, v1 (linkwall, the baseline) or centrifugo (a Centrifugo server that lets anonymous clients subscribe and publish)")
	fs.IntVar(&o.load.Users, "users", 200, "users to create (U)")
	fs.IntVar(&o.load.Rooms, "rooms", 2, "group rooms (R)")
	fs.IntVar(&o.load.Group, "group", 100, "members per room, creator included (G)")
	fs.IntVar(&o.load.Conns, "conns", 0, "WebSocket clients, one per user (0 = every user); for idle: idle connections")
	fs.IntVar(&o.load.Senders, "senders", 0, "users that send (0 = every connected member)")
	fs.Float64Var(&o.load.Rate, "rate", 200, "messages per second, all senders together (M)")
	fs.DurationVar(&o.load.Duration, "d", 10*time.Second, "send for this long")
	fs.Int64Var(&o.load.Count, "n", 0, "send at most this many messages (0 = no bound)")
	fs.IntVar(&o.load.UsersPerIP, "users-per-ip", 16, "create at most this many sessions per loopback source address 127.1xx.y.z (servers limit sessions per IP; 0 = one address)")
	fs.DurationVar(&o.load.Slice, "slices", 0, "also report the latency of every slice of this length (e.g. 100ms) of each phase: in -json every slice, in the report the median, 90th percentile and worst of the slices' p99s and the first second's one by one (0 = off)")
	fs.DurationVar(&o.load.Warmup, "warmup", 0, "before each measured run on fresh connections (-d, -max's half peak, -max-also), send this long at the same rate, reported apart and not counted (0 = none)")
	fs.BoolVar(&o.load.SocketTime, "socket-time", false, "also time each delivery to the receiver's socket, from the kernel's receive timestamps (Linux): the latency without the receiving reader's own wait for a core; reading with recvmsg costs linkload CPU and so raises every figure a little")
	fs.DurationVar(&o.load.Drain, "drain", 5*time.Second, "wait this long for deliveries after sending")
	fs.BoolVar(&o.max, "max", false, "ramp the rate to the peak, then run at half of it for -d")
	fs.Float64Var(&o.mc.Start, "max-start", 100, "first rate of the ramp, msgs/s")
	fs.Float64Var(&o.mc.Factor, "max-factor", 1.5, "rate multiplier per ramp step")
	fs.DurationVar(&o.mc.Step, "max-step", 3*time.Second, "length of each ramp step")
	fs.Float64Var(&o.mc.Limit, "max-rate", 100000, "highest rate the ramp tries, msgs/s")
	fs.IntVar(&o.mc.Refine, "max-refine", 4, "bisection steps after the first failing rate")
	fs.Float64Var(&o.mc.Also, "max-also", 0, "after the half-peak run, also run -d at this rate, msgs/s (compare: linkwall at the baseline's half peak)")
	fs.StringVar(&o.jsonFile, "json", "", "write the results as JSON to this file")
	fs.IntVar(&o.idle, "idle", 0, "compare: also open this many idle connections and report memory per connection (on a fresh server process)")
	fs.IntVar(&o.idleUsers, "idle-users", 0, "idle: users the idle connections are spread over (0 = one per connection; linkwall takes at most 32 per user)")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "idle: wait before reading the server's memory")
	fs.BoolVar(&o.resume, "resume", false, "compare: also time a resume of -msgs messages (linkwall only; on a fresh server process, after -idle)")
	fs.IntVar(&o.msgs, "msgs", 1000, "resume: messages sent while the client is away")
	fs.IntVar(&o.reps, "reps", 5, "resume: how many times to resume")
	fs.Float64Var(&o.resumeRate, "resume-rate", 500, "resume: send rate of the missed messages, msgs/s")
	fs.StringVar(&o.linkwall, "linkwall", "", "compare: the linkwall binary")
	fs.StringVar(&o.lwArgs, "linkwall-args", "", "compare: extra flags for 'linkwall serve', space separated")
	fs.BoolVar(&o.skipBase, "skip-baseline", false, "compare: measure linkwall only")
	fs.IntVar(&o.rounds, "rounds", 1, "compare: run the whole comparison this many times in a row and report the median and range of each ratio")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:0", "baseline-server, centrifugo-config: listen address")
	fs.StringVar(&o.pprof, "pprof", "", "baseline-server: serve net/http/pprof on this address (loopback)")
	fs.BoolVar(&o.quiet, "q", false, "no progress lines")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write linkload's own CPU profile to this file (it shares the machine with the server)")
	return fs, o
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "load"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	fs, o := newFlags(cmd, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "linkload: unexpected arguments %q\n%s", fs.Args(), usage)
		return 2
	}
	if !o.quiet {
		o.load.Progress = stderr
	}
	if o.load.Protocol != protoV1 && cmd != "load" && cmd != "idle" {
		fmt.Fprintf(stderr, "linkload %s: speaks only -protocol %s; -protocol %s is for load and idle\n", cmd, protoV1, o.load.Protocol)
		return 2
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "linkload:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "linkload:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	var rep any
	var err error
	switch cmd {
	case "load":
		var mc *maxConfig
		if o.max {
			mc = &o.mc
		}
		var r *Report
		r, err = runLoad(ctx, o.load, mc)
		if r != nil {
			printReport(stdout, r)
			rep = r
		}
	case "idle":
		if o.load.Conns <= 0 {
			fmt.Fprintln(stderr, "linkload idle: need -conns N")
			return 2
		}
		var m *MemReport
		m, err = runIdle(ctx, o.load.Protocol, o.load.Target, o.load.Conns, o.idleUsers, o.load.UsersPerIP, o.settle, 0)
		if m != nil {
			r := &Report{Server: o.load.Target, Target: o.load.Target, Idle: m}
			printReport(stdout, r)
			rep = r
		}
	case "resume":
		cfg := o.load
		cfg.Rate = o.resumeRate
		if cfg.Users > 51 && !flagSet(fs, "users") {
			cfg.Users = 51 // 50 senders and the one who is away
		}
		var rr *ResumeReport
		rr, err = runResume(ctx, cfg, o.msgs, o.reps)
		if rr != nil {
			r := &Report{Server: o.load.Target, Target: o.load.Target, Resume: rr}
			printReport(stdout, r)
			rep = r
		}
	case "compare":
		if o.rounds > 1 {
			var rs *Rounds
			rs, err = runRounds(ctx, o, stderr)
			if rs != nil {
				printRounds(stdout, rs)
				rep = rs
			}
			break
		}
		var c *Comparison
		c, err = runCompare(ctx, o, stderr)
		if c != nil {
			printComparison(stdout, c)
			rep = c
		}
	case "baseline-server":
		err = serveBaseline(ctx, o.addr, o.pprof, stdout, stderr)
	case "centrifugo-config":
		addr := o.addr
		if !flagSet(fs, "addr") {
			addr = "127.0.0.1:8000" // Centrifugo's default port
		}
		var conf string
		if conf, err = centrifugoConfig(addr); err == nil {
			fmt.Fprint(stdout, conf)
		}
	default:
		fmt.Fprintf(stderr, "linkload: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if rep != nil && o.jsonFile != "" {
		if werr := writeJSON(o.jsonFile, rep); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "linkload:", err)
		return 1
	}
	return 0
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func mib(b float64) float64 { return b / (1 << 20) }

func printPhase(w io.Writer, name string, p *phase) {
	if wp := p.Warmup; wp != nil {
		fmt.Fprintf(w, "%s, warm-up (not counted): %.1fs at %.0f msgs/s, delivered %d of %d, p50 %.2fms p99 %.2fms max %.2fms\n",
			name, wp.Seconds, wp.SendRate, wp.Received, wp.Expected, wp.Latency.P50Ms, wp.Latency.P99Ms, wp.Latency.MaxMs)
		printSlices(w, wp)
	}
	fmt.Fprintf(w, "%s: %.0f msgs/s target, %.0f sent/s for %.1fs\n", name, p.TargetRate, p.SendRate, p.Seconds)
	fmt.Fprintf(w, "  sent %d, acked %d, rejected %d; deliveries expected %d, received %d, dropped %d, duplicates %d, stray %d; bot messages %d; clients dropped %d\n",
		p.Sent, p.Acked, p.Rejected, p.Expected, p.Received, p.Dropped, p.Duplicates, p.Stray, p.BotMessages, p.ClientsDropped)
	fmt.Fprintf(w, "  delivered %.0f msgs/s; latency p50 %.2fms p90 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms (n=%d); drain %.0fms\n",
		p.DeliveredPerSec, p.Latency.P50Ms, p.Latency.P90Ms, p.Latency.P99Ms, p.Latency.P999Ms, p.Latency.MaxMs, p.Latency.Count, p.DrainMs)
	if s := p.SocketLatency; s != nil {
		fmt.Fprintf(w, "  to the receiver's socket (kernel receive time, without the receiver's wait for a core): p50 %.2fms p90 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms\n",
			s.P50Ms, s.P90Ms, s.P99Ms, s.P999Ms, s.MaxMs)
	}
	fmt.Fprintf(w, "  server used %.2f cores (%.0f deliveries per CPU second), linkload %.2f cores; load average %.1f → %.1f\n",
		p.ServerCores, p.DeliveriesPerCPUSecond, p.ClientCores, p.LoadAvg[0], p.LoadAvg[1])
	if p.MachineCores > 0 {
		fmt.Fprintf(w, "  machine: %.2f of %d cores busy (%.0f%%), %.2f stolen by the hypervisor\n",
			p.MachineBusyCores, p.MachineCores, 100*p.MachineBusyCores/float64(p.MachineCores), p.MachineStealCores)
	}
	if p.ServerSendMs > 0 {
		fmt.Fprintf(w, "  server means: durable append %.2fms, receipt to queued for every member %.2fms",
			p.ServerAppendMs, p.ServerSendMs)
		if p.ServerSyncMs > 0 {
			fmt.Fprintf(w, "; WAL sync %.2fms, %.1f appends per commit", p.ServerSyncMs, p.ServerBatch)
		}
		fmt.Fprintln(w)
	}
	printSlices(w, p)
}

// printSlices reports the spread of a phase's slice p99s, and the first
// second's one by one, where a late start shows.
func printSlices(w io.Writer, p *phase) {
	sl := p.Slices
	if len(sl) == 0 || p.SliceSeconds <= 0 {
		return
	}
	inFirst := max(int(1/p.SliceSeconds+0.5), 1)
	var first []string
	worst := sl[0]
	for i, s := range sl {
		if i < inFirst {
			first = append(first, strconv.FormatFloat(s.P99Ms, 'f', 1, 64))
		}
		if s.P99Ms > worst.P99Ms {
			worst = s
		}
	}
	fmt.Fprintf(w, "  p99 of each of %d slices of %gs: median %.1f ms, 90th percentile %.1f ms, worst %.1f ms (ending at %.1fs); the first second's: %s ms\n",
		len(sl), p.SliceSeconds, p.SliceP99MedianMs, p.SliceP99P90Ms, worst.P99Ms, worst.AtS, strings.Join(first, " · "))
	if p.SocketSliceP99MedianMs > 0 {
		fmt.Fprintf(w, "  to the receiver's socket: median slice p99 %.1f ms\n", p.SocketSliceP99MedianMs)
	}
}

func printMem(w io.Writer, name string, m *MemReport) {
	fmt.Fprintf(w, "%s: %d connections in %.1fs; server RSS %.1f → %.1f MiB (%.0f B/conn), heap in use %.1f → %.1f MiB (%.0f B/conn), stacks %.0f B/conn, %g goroutines\n",
		name, m.Conns, m.ConnectSeconds, mib(m.RSSBefore), mib(m.RSSAfter), m.RSSPerConn,
		mib(m.HeapBefore), mib(m.HeapAfter), m.HeapPerConn, m.StackPerConn, m.Goroutines)
}

func printReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "== %s\n", r.Server)
	if c := r.Config; c != nil {
		fmt.Fprintf(w, "users %d, rooms %d × %d members, %d connections, %d senders\n", c.Users, c.Rooms, c.Group, c.Conns, c.Senders)
	}
	if r.Connect != nil {
		printMem(w, "connect", r.Connect)
	}
	if r.Load != nil {
		printPhase(w, "load", r.Load)
	}
	if m := r.Max; m != nil {
		fmt.Fprintf(w, "max: peak %.0f msgs/s = %.0f deliveries/s (limited by: %s)\n", m.PeakMsgsPerSec, m.PeakDeliveredPerSec, m.LimitedBy)
		if m.HalfPeakFailed != nil {
			printPhase(w, "half peak, first try (lost deliveries; repeated)", m.HalfPeakFailed)
		}
		if m.HalfPeak != nil {
			printPhase(w, "half peak", m.HalfPeak)
		}
		if m.Also != nil {
			printPhase(w, "also (-max-also; in compare, the baseline's half-peak rate)", m.Also)
		}
	}
	if r.Idle != nil {
		printMem(w, "idle", r.Idle)
	}
	if rr := r.Resume; rr != nil {
		fmt.Fprintf(w, "resume: %d messages, median %.1fms, max %.1fms over %d reps (dial+resume %v ms), in order %v\n",
			rr.Messages, rr.MedianMs, rr.MaxMs, rr.Reps, rr.DialMs, rr.InOrder)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "errors: %v\n", r.Errors)
	}
	if len(r.CloseCodes) > 0 {
		fmt.Fprintf(w, "close codes: %v\n", r.CloseCodes)
	}
}
