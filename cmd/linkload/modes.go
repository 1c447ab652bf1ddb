package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Report is everything one run measured; it is what -json writes.
type Report struct {
	Server     string           `json:"server"`
	Target     string           `json:"target"`
	Run        string           `json:"run,omitempty"`
	Config     *ConfigReport    `json:"config,omitempty"`
	Connect    *MemReport       `json:"connect,omitempty"` // the load's own clients
	Load       *phase           `json:"load,omitempty"`    // fixed-rate run
	Max        *MaxReport       `json:"max,omitempty"`
	Idle       *MemReport       `json:"idle,omitempty"`
	Resume     *ResumeReport    `json:"resume,omitempty"`
	Errors     map[string]int64 `json:"errors"`
	CloseCodes map[string]int64 `json:"close_codes"`
}

// ConfigReport echoes the load's shape.
type ConfigReport struct {
	Users    int     `json:"users"`
	Rooms    int     `json:"rooms"`
	Group    int     `json:"group"`
	Conns    int     `json:"conns"`
	Senders  int     `json:"senders"`
	Rate     float64 `json:"rate"`
	Duration float64 `json:"duration_s"`
	Count    int64   `json:"count"`
}

// MemReport is the server's memory before and after opening Conns
// connections, from its /metrics (RSS falls back to /proc for a child).
type MemReport struct {
	Conns          int     `json:"conns"`
	ConnectSeconds float64 `json:"connect_s"`
	HelloMissing   int     `json:"hello_missing,omitempty"`
	RSSBefore      float64 `json:"rss_before_bytes"`
	RSSAfter       float64 `json:"rss_after_bytes"`
	HeapBefore     float64 `json:"heap_inuse_before_bytes"`
	HeapAfter      float64 `json:"heap_inuse_after_bytes"`
	StackBefore    float64 `json:"stack_inuse_before_bytes"`
	StackAfter     float64 `json:"stack_inuse_after_bytes"`
	Goroutines     float64 `json:"goroutines_after"`
	RSSPerConn     float64 `json:"rss_per_conn_bytes"`
	HeapPerConn    float64 `json:"heap_inuse_per_conn_bytes"`
	StackPerConn   float64 `json:"stack_inuse_per_conn_bytes"`
}

func memReport(conns int, before, after map[string]float64) *MemReport {
	m := &MemReport{Conns: conns,
		RSSBefore: before["process_resident_memory_bytes"], RSSAfter: after["process_resident_memory_bytes"],
		HeapBefore: before["go_memstats_heap_inuse_bytes"], HeapAfter: after["go_memstats_heap_inuse_bytes"],
		StackBefore: before["go_memstats_stack_inuse_bytes"], StackAfter: after["go_memstats_stack_inuse_bytes"],
		Goroutines: after["go_goroutines"]}
	if conns > 0 {
		m.RSSPerConn = (m.RSSAfter - m.RSSBefore) / float64(conns)
		m.HeapPerConn = (m.HeapAfter - m.HeapBefore) / float64(conns)
		m.StackPerConn = (m.StackAfter - m.StackBefore) / float64(conns)
	}
	return m
}

// MaxReport is the ramp to peak throughput, and the run at half of it.
type MaxReport struct {
	Steps               []phase `json:"steps"`
	PeakRate            float64 `json:"peak_target_msgs_per_s"`
	PeakMsgsPerSec      float64 `json:"peak_msgs_per_s"`
	PeakDeliveredPerSec float64 `json:"peak_delivered_per_s"`
	LimitedBy           string  `json:"limited_by"`
	HalfPeak            *phase  `json:"half_peak,omitempty"`
	// HalfPeakFailed is a first half-peak run that lost deliveries, when
	// HalfPeak is its repetition.
	HalfPeakFailed *phase `json:"half_peak_failed,omitempty"`
	// Also is the run at maxConfig.Also, after the half-peak run.
	Also *phase `json:"also,omitempty"`
}

// maxConfig tunes the ramp.
type maxConfig struct {
	Start  float64       // first rate, msgs/s
	Factor float64       // rate multiplier per step
	Step   time.Duration // length of each step
	Limit  float64       // never ask more than this
	Refine int           // bisection steps between last pass and first fail
	// Also, if > 0, is one more rate to run at after the half peak, on
	// fresh connections: compare runs linkwall at the baseline's half peak,
	// so that latency is also compared at the same load.
	Also float64
}

// verdict says why a step did not keep up, or "" when it did.
func verdict(p phase) string {
	switch {
	case p.ClientsDropped > 0:
		return "clients dropped"
	case p.Dropped > 0:
		return "deliveries lost or late beyond drain"
	case p.Rejected > 0:
		return "sends rejected"
	case p.Duplicates > 0 || p.Stray > 0:
		return "duplicate or stray deliveries"
	case p.SendRate < 0.95*p.TargetRate:
		return "senders could not write at the target rate"
	case p.DrainMs > 250 || p.Latency.P99Ms > 500:
		return "deliveries fell behind"
	}
	return ""
}

// runLoad sets up a load and runs it at a fixed rate or, with mc set, ramps
// it to its peak and then measures latency at half the peak on fresh
// connections.
func runLoad(ctx context.Context, cfg loadConfig, mc *maxConfig) (*Report, error) {
	l, err := newLoad(cfg)
	if err != nil {
		return nil, err
	}
	rep := &Report{Server: cfg.Target, Target: cfg.Target, Run: l.run}
	if err := l.setup(ctx); err != nil {
		l.close()
		return nil, err
	}
	rep.Config = &ConfigReport{Users: cfg.Users, Rooms: cfg.Rooms, Group: cfg.Group, Conns: l.cfg.Conns,
		Senders: len(l.senders), Rate: cfg.Rate, Duration: cfg.Duration.Seconds(), Count: cfg.Count}
	rep.Connect = memReport(len(l.clients), l.memBefore, l.memAfter)
	rep.Connect.ConnectSeconds = l.connectTime.Seconds()
	rep.Connect.HelloMissing = l.helloMissing
	if mc == nil {
		p := l.measure(ctx, cfg.Rate, cfg.Duration, cfg.Count)
		rep.Load = &p
		l.close()
		rep.Errors, rep.CloseCodes = l.errorsCopy()
		return rep, ctx.Err()
	}
	rep.Max, l = l.ramp(ctx, *mc)
	l.close()
	rep.Errors, rep.CloseCodes = l.errorsCopy()
	if rep.Max.PeakRate == 0 || ctx.Err() != nil {
		return rep, errors.Join(ctx.Err(), errors.New("no step of the ramp kept up"))
	}
	half := cfg
	half.Rate = rep.Max.PeakRate / 2
	half.Count = 0
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "[linkload] peak %.0f msgs/s (%.0f deliveries/s); now %.0f msgs/s for %s on fresh connections\n",
			rep.Max.PeakMsgsPerSec, rep.Max.PeakDeliveredPerSec, half.Rate, half.Duration)
	}
	// The machine is shared: a half-peak run that lost deliveries is run
	// once more on fresh connections, and both are reported.
	for try := 0; try < 2 && ctx.Err() == nil; try++ {
		p, err := freshPhase(ctx, half, rep, "half-peak ")
		if err != nil {
			return rep, fmt.Errorf("half-peak run: %w", err)
		}
		if rep.Max.HalfPeak != nil {
			rep.Max.HalfPeakFailed = rep.Max.HalfPeak
		}
		rep.Max.HalfPeak = &p
		if clean(&p) {
			break
		}
	}
	if mc.Also > 0 && ctx.Err() == nil {
		also := half
		also.Rate = mc.Also
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "[linkload] now %.0f msgs/s for %s on fresh connections\n", also.Rate, also.Duration)
		}
		p, err := freshPhase(ctx, also, rep, "also ")
		if err != nil {
			return rep, fmt.Errorf("run at %.0f msgs/s: %w", also.Rate, err)
		}
		rep.Max.Also = &p
	}
	return rep, ctx.Err()
}

// freshPhase runs one phase at cfg.Rate for cfg.Duration on new users,
// rooms and connections, and adds its errors to rep's under prefix.
func freshPhase(ctx context.Context, cfg loadConfig, rep *Report, prefix string) (phase, error) {
	l, err := newLoad(cfg)
	if err != nil {
		return phase{}, err
	}
	if err := l.setup(ctx); err != nil {
		l.close()
		return phase{}, err
	}
	p := l.measure(ctx, cfg.Rate, cfg.Duration, 0)
	l.close()
	errs, closes := l.errorsCopy()
	for k, v := range errs {
		rep.Errors[prefix+k] += v
	}
	for k, v := range closes {
		rep.CloseCodes[prefix+k] += v
	}
	return p, nil
}

// ramp raises the rate step by step until a step does not keep up, then
// bisects between the last good and the first bad rate. A step that lost
// clients leaves the rest of the ramp on a fresh load; ramp returns the
// load in use at the end, for the caller to close.
func (l *load) ramp(ctx context.Context, mc maxConfig) (*MaxReport, *load) {
	m := &MaxReport{}
	var best *phase
	fail := 0.0
	step := func(rate float64) bool {
		if !l.waitDrained(ctx, 10*time.Second) {
			m.LimitedBy = "backlog never drained"
			return false
		}
		var p phase
		var v string
		for try := range 2 {
			p = l.runPhase(ctx, rate, mc.Step, 0)
			m.Steps = append(m.Steps, p)
			v = verdict(p)
			if l.cfg.Progress != nil {
				fmt.Fprintf(l.cfg.Progress, "[linkload] step %.0f msgs/s: sent %.0f/s, delivered %.0f/s, drain %.0fms, p99 %.2fms, server %.2f cores, linkload %.2f cores, load avg %.1f: %s\n",
					rate, p.SendRate, p.DeliveredPerSec, p.DrainMs, p.Latency.P99Ms, p.ServerCores, p.ClientCores, p.LoadAvg[1], orOK(v))
			}
			// On a shared machine a stall elsewhere can fail one step: a
			// step that lost nothing gets a second chance.
			if v == "" || try == 1 || p.Dropped > 0 || p.ClientsDropped > 0 || p.Rejected > 0 ||
				!l.waitDrained(ctx, 10*time.Second) {
				break
			}
		}
		if v != "" {
			m.LimitedBy = v
			fail = rate
			return false
		}
		if best == nil || p.DeliveredPerSec > best.DeliveredPerSec {
			best = &m.Steps[len(m.Steps)-1]
		}
		return true
	}
	for rate := mc.Start; rate <= mc.Limit && ctx.Err() == nil; rate *= mc.Factor {
		if !step(rate) {
			break
		}
	}
	lastGood := 0.0
	if best != nil {
		lastGood = best.TargetRate
	}
	for i := 0; i < mc.Refine && fail > 0 && lastGood > 0 && ctx.Err() == nil; i++ {
		if l.serverClosed.Load() > 0 || !l.waitDrained(ctx, 5*time.Second) {
			// Lost clients or a backlog: later steps would not be
			// comparable, so they run on fresh connections.
			fresh, err := newLoad(l.cfg)
			if err == nil {
				err = fresh.setup(ctx)
			}
			l.close()
			l = fresh
			if err != nil {
				m.LimitedBy += "; refining failed: " + err.Error()
				break
			}
		}
		mid := (lastGood + fail) / 2
		if step(mid) {
			lastGood = mid
		}
	}
	if fail == 0 && m.LimitedBy == "" {
		m.LimitedBy = "rate limit of the ramp (-max-rate)"
	}
	if best != nil {
		m.PeakRate = best.TargetRate
		m.PeakMsgsPerSec = best.SendRate
		m.PeakDeliveredPerSec = best.DeliveredPerSec
	}
	return m, l
}

func orOK(v string) string {
	if v == "" {
		return "ok"
	}
	return v
}

// waitDrained waits until every expected delivery has arrived.
func (l *load) waitDrained(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if c := l.snapshot(); c.received >= c.expected {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// runIdle opens n connections that only listen, spread over users, and
// reports the server's memory per connection.
func runIdle(ctx context.Context, proto, target string, n, users, usersPerIP int, settle time.Duration, pid int) (*MemReport, error) {
	if proto != protoV1 && proto != protoCentrifugo {
		return nil, fmt.Errorf("-protocol %q: want %s or %s", proto, protoV1, protoCentrifugo)
	}
	a, err := newAPI(target, usersPerIP)
	if err != nil {
		return nil, err
	}
	if users <= 0 || users > n {
		users = n
	}
	run := randID()
	us := make([]user, users) // Centrifugo's connections are anonymous
	if proto == protoV1 {
		if us, err = a.createUsers(ctx, "idle"+run, users); err != nil {
			return nil, fmt.Errorf("create users: %w", err)
		}
	}
	a.closeIdle() // the sign-up connections are not part of the measurement
	time.Sleep(settle)
	before := sampleMem(ctx, a, pid)
	d := &websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
	conns := make([]*websocket.Conn, n)
	done := make([]chan struct{}, n)
	var (
		mu       sync.Mutex
		firstErr error
		failed   int
		missing  int
		wg       sync.WaitGroup
	)
	start := time.Now()
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				var (
					c   *websocket.Conn
					err error
				)
				if proto == protoCentrifugo {
					// Connected, subscribed to nothing: the reply to
					// the connect command stands for hello.
					c, err = a.connectCentrifugo(ctx, d, nil)
				} else {
					c, err = a.dial(ctx, d, us[i%len(us)])
				}
				if err != nil {
					mu.Lock()
					failed++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
				hello := make(chan struct{})
				done[i] = make(chan struct{})
				go idleRead(c, hello, done[i])
				select {
				case <-hello:
				case <-done[i]:
				case <-time.After(10 * time.Second):
					mu.Lock()
					missing++
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	connectTime := time.Since(start)
	defer func() {
		a.closeIdle()
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "idle done")
		for _, c := range conns {
			if c != nil {
				c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
				c.Close()
			}
		}
	}()
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d idle connections failed: %w", failed, n, firstErr)
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	after := sampleMem(ctx, a, pid)
	dropped := 0
	for _, d := range done {
		select {
		case <-d:
			dropped++
		default:
		}
	}
	if dropped > 0 {
		return nil, fmt.Errorf("the server closed %d of %d idle connections", dropped, n)
	}
	m := memReport(n, before, after)
	m.ConnectSeconds = connectTime.Seconds()
	m.HelloMissing = missing
	return m, nil
}

// idleRead reads and discards, signalling the hello; it keeps the pongs
// flowing (gorilla answers WebSocket pings while a read is in progress,
// and Centrifugo's pings, "{}" messages, are answered here).
func idleRead(c *websocket.Conn, hello, done chan struct{}) {
	defer close(done)
	got := false
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return
		}
		if !got && (bytes.Contains(b, typeHello) || bytes.HasPrefix(b, cfConnected)) {
			got = true
			close(hello)
		}
		for line := range bytes.SplitSeq(b, nl) {
			if bytes.Equal(line, cfPing) {
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				c.WriteMessage(websocket.TextMessage, cfPing)
			}
		}
	}
}

// gcWait bounds how long awaitGC scrapes.
const gcWait = 15 * time.Second

// awaitGC scrapes the server's /metrics until two garbage collections have
// completed since the first scrape, and returns the last scrape. An idle
// server does not collect for minutes, so without this the heap and RSS
// figures hold whatever garbage sign-ups and handshakes left, and the
// per-connection figures swing by tens of KB from run to run. Scraping
// allocates on the server, which is what eventually triggers a collection.
func awaitGC(ctx context.Context, a *api) map[string]float64 {
	first, err := a.scrapeMetrics(ctx)
	if err != nil {
		return map[string]float64{}
	}
	start, ok := first["go_gc_duration_seconds_count"]
	if !ok {
		return first
	}
	deadline := time.Now().Add(gcWait)
	var (
		mu   sync.Mutex
		last = first
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				m, err := a.scrapeMetrics(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				if m["go_gc_duration_seconds_count"] >= last["go_gc_duration_seconds_count"] {
					last = m
				}
				done := last["go_gc_duration_seconds_count"] >= start+2
				mu.Unlock()
				if done {
					return
				}
			}
		})
	}
	wg.Wait()
	return last
}

// sampleMem reads the server's memory gauges after a collection; for a child process whose
// /metrics lacks the RSS it reads /proc.
func sampleMem(ctx context.Context, a *api, pid int) map[string]float64 {
	m := awaitGC(ctx, a)
	if _, ok := m["process_resident_memory_bytes"]; !ok && pid > 0 {
		if rss, err := procRSS(pid); err == nil {
			m["process_resident_memory_bytes"] = rss
		}
	}
	return m
}

func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// ResumeReport times a client catching up on messages sent while it was away.
type ResumeReport struct {
	Messages   int       `json:"messages"`
	Reps       int       `json:"reps"`
	ResumeMs   []float64 `json:"resume_ms"`      // from the resume frame to the last missed message
	DialMs     []float64 `json:"dial_resume_ms"` // from dialling to the last missed message
	MedianMs   float64   `json:"median_ms"`
	MaxMs      float64   `json:"max_ms"`
	InOrder    bool      `json:"in_order"` // seqs after+1, after+2, … with no gap or duplicate
	OthersSeen int       `json:"other_messages"`
}

// runResume sends msgs messages to a room while one member is away, then
// times that member's resume until all of them have arrived, reps times.
func runResume(ctx context.Context, cfg loadConfig, msgs, reps int) (*ResumeReport, error) {
	// The away member is the room's last member, never connected by the load.
	cfg.Rooms, cfg.Conns, cfg.Count = 1, cfg.Users-1, int64(msgs)
	cfg.Group = cfg.Users
	l, err := newLoad(cfg)
	if err != nil {
		return nil, err
	}
	if err := l.setup(ctx); err != nil {
		l.close()
		return nil, err
	}
	away := l.users[cfg.Users-1]
	d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second}

	// Connected once, then away, like a phone going into a tunnel.
	c, err := l.api.dial(ctx, d, away)
	if err != nil {
		l.close()
		return nil, err
	}
	c.Close()
	p := l.runPhase(ctx, cfg.Rate, 0, int64(msgs))
	l.close()
	if p.Acked != int64(msgs) {
		return nil, fmt.Errorf("only %d of %d messages were acknowledged (rejected %d)", p.Acked, msgs, p.Rejected)
	}
	rep := &ResumeReport{Messages: msgs, Reps: reps, InOrder: true}
	for range reps {
		resumeMs, dialMs, inOrder, others, err := resumeOnce(ctx, l, d, away, msgs)
		if err != nil {
			return rep, err
		}
		rep.ResumeMs = append(rep.ResumeMs, resumeMs)
		rep.DialMs = append(rep.DialMs, dialMs)
		rep.InOrder = rep.InOrder && inOrder
		rep.OthersSeen = others
	}
	s := append([]float64(nil), rep.ResumeMs...)
	sort.Float64s(s)
	rep.MedianMs, rep.MaxMs = s[len(s)/2], s[len(s)-1]
	return rep, nil
}

func resumeOnce(ctx context.Context, l *load, d *websocket.Dialer, away user, msgs int) (resumeMs, dialMs float64, inOrder bool, others int, err error) {
	t0 := time.Now()
	c, err := l.api.dial(ctx, d, away)
	if err != nil {
		return 0, 0, false, 0, err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	type frame struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message struct {
			Room string `json:"room"`
			Seq  int64  `json:"seq"`
			Text string `json:"text"`
		} `json:"message"`
	}
	// Wait for the hello, so the resume is not raced against registration.
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return 0, 0, false, 0, fmt.Errorf("waiting for hello: %w", err)
		}
		if strings.Contains(string(b), `"type":"hello"`) {
			break
		}
	}
	room := l.rooms[0].ID
	t1 := time.Now()
	if err := c.WriteJSON(map[string]any{"type": "resume", "room": room, "after": 0}); err != nil {
		return 0, 0, false, 0, err
	}
	var last int64
	inOrder = true
	ours := 0
	for ours < msgs {
		_, b, err := c.ReadMessage()
		if err != nil {
			return 0, 0, false, 0, fmt.Errorf("after %d of %d messages: %w", ours, msgs, err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			var f frame
			if json.Unmarshal([]byte(line), &f) != nil {
				continue
			}
			switch {
			case f.Type == "error":
				return 0, 0, false, 0, fmt.Errorf("resume: error frame %q", f.Code)
			case f.Type != "message" || f.Message.Room != room:
				continue
			}
			if f.Message.Seq != last+1 {
				inOrder = false
			}
			last = f.Message.Seq
			if strings.HasPrefix(f.Message.Text, string(l.marker)) {
				ours++
			} else {
				others++
			}
		}
	}
	end := time.Now()
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return float64(end.Sub(t1).Microseconds()) / 1000, float64(end.Sub(t0).Microseconds()) / 1000, inOrder, others, nil
}
