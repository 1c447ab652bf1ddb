package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// api talks API v1 to one target server.
type api struct {
	base   *url.URL // http://host:port
	origin string   // Origin header for REST and WebSocket: the target itself
	hc     *http.Client

	// usersPerIP > 0 spreads session creation over loopback source
	// addresses 127.1xx.y.z, that many users each: servers limit sessions
	// per client IP (linkwall: a burst of 20, then 1/s), and a load of
	// thousands of users would otherwise spend minutes signing up.
	usersPerIP int
	sourceBase int // first source address index of this api
	mu         sync.Mutex
	bySource   map[int]*http.Client
}

func newTransport(local net.Addr) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}).DialContext,
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	}
}

// sourceBlock is how many source addresses one api may use: 16,000 users.
const sourceBlock = 1000

// nextSource hands each api its own block of source addresses, starting
// at a random one so that consecutive runs against one server do not reuse
// addresses whose session burst is spent.
var nextSource atomic.Int64

func init() { nextSource.Store(mrand.Int64N(5000) * sourceBlock) }

// sessionClient returns the client that creates user i's session.
func (a *api) sessionClient(i int) *http.Client {
	if a.usersPerIP <= 0 {
		return a.hc
	}
	k := a.sourceBase + i/a.usersPerIP
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.bySource[k]; ok {
		return c
	}
	ip := net.IPv4(127, byte(100+k/(250*250)%100), byte(k/250%250+1), byte(k%250+1))
	c := &http.Client{Timeout: 30 * time.Second, Transport: newTransport(&net.TCPAddr{IP: ip})}
	a.bySource[k] = c
	return c
}

// closeIdle closes idle keep-alive connections, which would otherwise hold
// up a server's graceful shutdown.
func (a *api) closeIdle() {
	a.hc.CloseIdleConnections()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.bySource {
		c.CloseIdleConnections()
	}
}

func newAPI(target string, usersPerIP int) (*api, error) {
	u, err := url.Parse(strings.TrimRight(target, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %q: want http://host:port", target)
	}
	a := &api{
		base:     u,
		origin:   u.Scheme + "://" + u.Host,
		hc:       &http.Client{Timeout: 30 * time.Second, Transport: newTransport(nil)},
		bySource: map[int]*http.Client{},
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() && ip.To4() != nil {
		a.usersPerIP = usersPerIP
		a.sourceBase = int(nextSource.Add(sourceBlock) - sourceBlock)
	}
	return a, nil
}

type user struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	token string
}

type roomInfo struct {
	ID      string   `json:"id"`
	Members []string `json:"members"`
}

// apiError is an API v1 error body, kept with its HTTP status.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

func (a *api) do(ctx context.Context, method, path, token string, in, out any) error {
	return a.doWith(ctx, a.hc, method, path, token, in, out)
}

func (a *api) doWith(ctx context.Context, hc *http.Client, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.origin+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Origin", a.origin)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error apiError `json:"error"`
		}
		json.Unmarshal(data, &e)
		e.Error.Status = resp.StatusCode
		return fmt.Errorf("%s %s: %w", method, path, &e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

func (a *api) createUser(ctx context.Context, i int, name string) (user, error) {
	var out struct {
		Token string `json:"token"`
		User  user   `json:"user"`
	}
	if err := a.doWith(ctx, a.sessionClient(i), http.MethodPost, "/api/v1/session", "", map[string]string{"name": name}, &out); err != nil {
		return user{}, err
	}
	if out.Token == "" || out.User.ID == "" {
		return user{}, fmt.Errorf("POST /api/v1/session: no token or user id in the answer")
	}
	out.User.token = out.Token
	return out.User, nil
}

// createUsers creates n users named prefix-0… with a few requests in flight.
func (a *api) createUsers(ctx context.Context, prefix string, n int) ([]user, error) {
	users := make([]user, n)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(n, 16) {
		wg.Go(func() {
			for i := range next {
				u, err := a.createUser(ctx, i, fmt.Sprintf("%s-%d", prefix, i))
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				users[i] = u
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
		return users, nil
	}
}

func (a *api) createGroup(ctx context.Context, owner user, name string, members []string) (roomInfo, error) {
	var out struct {
		Room roomInfo `json:"room"`
	}
	in := map[string]any{"kind": "group", "name": name, "members": members, "lang": "zh"}
	if err := a.do(ctx, http.MethodPost, "/api/v1/rooms", owner.token, in, &out); err != nil {
		return roomInfo{}, err
	}
	return out.Room, nil
}

// dial opens a WebSocket for u, same-origin, authenticated by bearer token.
func (a *api) dial(ctx context.Context, d *websocket.Dialer, u user) (*websocket.Conn, error) {
	scheme := "ws"
	if a.base.Scheme == "https" {
		scheme = "wss"
	}
	h := http.Header{}
	h.Set("Origin", a.origin)
	h.Set("Authorization", "Bearer "+u.token)
	c, resp, err := d.DialContext(ctx, scheme+"://"+a.base.Host+"/ws", h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial /ws: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial /ws: %w", err)
	}
	return c, nil
}

// scrapeMetrics reads the gauges linkload needs from the target's
// Prometheus /metrics. Missing ones are absent from the map.
func (a *api) scrapeMetrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.origin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	return parseMetrics(data, "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_stack_inuse_bytes", "go_goroutines", "go_gc_duration_seconds_count",
		"process_cpu_seconds_total",
		appendSum, appendCount, sendSum, sendCount, syncSum, syncCount, batchSum, batchCount), nil
}

// linkwall's own histograms (absent from the baseline): the durable store
// append, and a message's time from its receipt until it is queued for
// every member.
const (
	appendSum   = "linkwall_store_append_latency_seconds_sum"
	appendCount = "linkwall_store_append_latency_seconds_count"
	sendSum     = "linkwall_send_latency_seconds_sum"
	sendCount   = "linkwall_send_latency_seconds_count"
	// The embedded store's: its WAL syncs and its group commits' sizes.
	syncSum    = "linkwall_store_sync_seconds_sum"
	syncCount  = "linkwall_store_sync_seconds_count"
	batchSum   = "linkwall_store_batch_messages_sum"
	batchCount = "linkwall_store_batch_messages_count"
)

// meanMs is the mean in milliseconds of a histogram of seconds between
// two scrapes; 0 if the server has no such histogram or observed nothing.
func meanMs(before, after map[string]float64, sum, count string) float64 {
	return 1000 * mean(before, after, sum, count)
}

// mean is the mean of a histogram's observations between two scrapes.
func mean(before, after map[string]float64, sum, count string) float64 {
	s0, ok0 := before[sum]
	s1, ok1 := after[sum]
	n := after[count] - before[count]
	if !ok0 || !ok1 || n <= 0 {
		return 0
	}
	return (s1 - s0) / n
}

// parseMetrics picks the unlabelled samples named in want from Prometheus
// text exposition.
func parseMetrics(data []byte, want ...string) map[string]float64 {
	out := make(map[string]float64)
	for line := range strings.Lines(string(data)) {
		name, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for _, w := range want {
			if name == w {
				var f float64
				if _, err := fmt.Sscanf(strings.Fields(val)[0], "%g", &f); err == nil {
					out[w] = f
				}
			}
		}
	}
	return out
}
