package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeCentrifugo speaks the part of Centrifugo's JSON client protocol that
// linkload uses: connect, subscribe, publish (a push to every subscriber,
// then the reply), and a ping after each connect that must be answered.
type fakeCentrifugo struct {
	reject func(id uint32) bool // publishes answered with error 103

	mu     sync.Mutex
	subs   map[string][]*fakeConn
	offset map[string]int
	pongs  atomic.Int64
	pings  atomic.Int64
}

type fakeConn struct {
	mu sync.Mutex
	c  *websocket.Conn
}

func (fc *fakeConn) send(b []byte) {
	fc.mu.Lock()
	fc.c.WriteMessage(websocket.TextMessage, b)
	fc.mu.Unlock()
}

func startFakeCentrifugo(t *testing.T, reject func(uint32) bool) (*fakeCentrifugo, string) {
	t.Helper()
	f := &fakeCentrifugo{reject: reject, subs: map[string][]*fakeConn{}, offset: map[string]int{}}
	up := websocket.Upgrader{} // same-origin check: linkload sends the target as Origin
	mux := http.NewServeMux()
	mux.HandleFunc(cfDialPath, func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		f.serve(&fakeConn{c: c})
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 1e6\n"))
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return f, hs.URL
}

// awaitPongs waits up to 5 s for n pongs, which the fake's readers may
// still be taking in when the load returns, and returns the count.
func (f *fakeCentrifugo) awaitPongs(n int64) int64 {
	for deadline := time.Now().Add(5 * time.Second); f.pongs.Load() < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return f.pongs.Load()
}

func (f *fakeCentrifugo) serve(fc *fakeConn) {
	for {
		_, data, err := fc.c.ReadMessage()
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(data, nl) {
			if string(line) == "{}" {
				f.pongs.Add(1)
				continue
			}
			var cmd struct {
				ID        uint32 `json:"id"`
				Connect   *json.RawMessage
				Subscribe *struct{ Channel string }
				Publish   *struct {
					Channel string
					Data    json.RawMessage
				}
			}
			if err := json.Unmarshal(line, &cmd); err != nil {
				return
			}
			id := strconv.FormatUint(uint64(cmd.ID), 10)
			switch {
			case cmd.Connect != nil:
				// Reply and ping in one frame, as a server coalesces them.
				fc.send([]byte(`{"id":` + id + `,"connect":{"client":"c","version":"fake","ping":25,"pong":true}}` + "\n{}"))
				f.pings.Add(1)
			case cmd.Subscribe != nil:
				f.mu.Lock()
				f.subs[cmd.Subscribe.Channel] = append(f.subs[cmd.Subscribe.Channel], fc)
				f.mu.Unlock()
				fc.send([]byte(`{"id":` + id + `,"subscribe":{}}`))
			case cmd.Publish != nil:
				if f.reject != nil && f.reject(cmd.ID) {
					fc.send([]byte(`{"id":` + id + `,"error":{"code":103,"message":"permission denied"}}`))
					continue
				}
				f.mu.Lock()
				ch := cmd.Publish.Channel
				f.offset[ch]++
				push, _ := json.Marshal(map[string]any{"push": map[string]any{"channel": ch,
					"pub": map[string]any{"data": cmd.Publish.Data, "offset": f.offset[ch]}}})
				for _, s := range f.subs[ch] {
					s.send(push)
				}
				f.mu.Unlock()
				fc.send([]byte(`{"id":` + id + `,"publish":{}}`))
			}
		}
	}
}

func TestLoadSpeaksCentrifugo(t *testing.T) {
	f, url := startFakeCentrifugo(t, nil)
	out := filepath.Join(t.TempDir(), "r.json")
	runCmd(t, "-protocol", "centrifugo", "-url", url, "-users", "25", "-rooms", "3", "-group", "10",
		"-rate", "200", "-n", "300", "-d", "10s", "-q", "-json", out)
	r := readReport[Report](t, out)
	checkDelivered(t, "load", r.Load, 300, 10)
	if r.Connect == nil || r.Connect.HelloMissing != 0 {
		t.Errorf("connect %+v: every subscription should be confirmed", r.Connect)
	}
	if p := f.pings.Load(); p != 25 || f.awaitPongs(p) != p {
		t.Errorf("%d pings, %d pongs; want one a connection answered", p, f.pongs.Load())
	}
	// 25 users in 3 rooms of 10: five are in two rooms, so 30 subscriptions.
	f.mu.Lock()
	subs := 0
	for _, s := range f.subs {
		subs += len(s)
	}
	f.mu.Unlock()
	if subs != 30 {
		t.Errorf("%d subscriptions, want 30", subs)
	}
}

func TestLoadCountsRejectedCentrifugoPublishes(t *testing.T) {
	_, url := startFakeCentrifugo(t, func(id uint32) bool { return id%7 == 0 })
	out := filepath.Join(t.TempDir(), "r.json")
	runCmd(t, "-protocol", "centrifugo", "-url", url, "-users", "20", "-rooms", "2", "-group", "10",
		"-rate", "200", "-n", "200", "-d", "10s", "-q", "-json", out)
	r := readReport[Report](t, out)
	p := r.Load
	if p == nil || p.Sent != 200 || p.Rejected == 0 || p.Acked+p.Rejected != p.Sent {
		t.Fatalf("load %+v: want 200 sent, some rejected, the rest acknowledged", p)
	}
	if p.Expected != (p.Sent-p.Rejected)*10 || p.Received != p.Expected || p.Dropped != 0 {
		t.Errorf("expected %d received %d dropped %d: a rejected publish is not expected", p.Expected, p.Received, p.Dropped)
	}
	if r.Errors["reply:103"] != p.Rejected {
		t.Errorf("errors %v, want reply:103 = %d", r.Errors, p.Rejected)
	}
}

func TestIdleSpeaksCentrifugo(t *testing.T) {
	f, url := startFakeCentrifugo(t, nil)
	out := filepath.Join(t.TempDir(), "r.json")
	runCmd(t, "idle", "-protocol", "centrifugo", "-url", url, "-conns", "40", "-settle", "10ms", "-q", "-json", out)
	r := readReport[Report](t, out)
	if r.Idle == nil || r.Idle.Conns != 40 || r.Idle.HelloMissing != 0 {
		t.Fatalf("idle %+v: want 40 connections, each connected", r.Idle)
	}
	if f.pings.Load() != 40 || f.awaitPongs(40) != 40 {
		t.Errorf("%d pings, %d pongs; want 40 answered", f.pings.Load(), f.pongs.Load())
	}
}

func TestProtocolCentrifugoIsForLoadAndIdle(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run(t.Context(), []string{"resume", "-protocol", "centrifugo"}, &out, &errb); rc != 2 ||
		!strings.Contains(errb.String(), "-protocol centrifugo is for load and idle") {
		t.Errorf("exit %d, stderr %q", rc, errb.String())
	}
	if rc := run(t.Context(), []string{"-protocol", "mqtt"}, &out, &errb); rc != 1 ||
		!strings.Contains(errb.String(), `-protocol "mqtt"`) {
		t.Errorf("exit %d, stderr %q", rc, errb.String())
	}
}

// TestLoadAgainstRealCentrifugo runs a short load against a Centrifugo
// binary named by LINKLOAD_CENTRIFUGO (docs/benchmarks.md: how to install
// it); it is skipped without one.
func TestLoadAgainstRealCentrifugo(t *testing.T) {
	bin := os.Getenv("LINKLOAD_CENTRIFUGO")
	if bin == "" {
		t.Skip("LINKLOAD_CENTRIFUGO is not set: no Centrifugo binary to measure")
	}
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	conf, err := centrifugoConfig(addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url + "/metrics"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Centrifugo did not start within 10 s")
		}
	}
	out := filepath.Join(t.TempDir(), "r.json")
	runCmd(t, "-protocol", "centrifugo", "-url", url, "-users", "20", "-rooms", "2", "-group", "10",
		"-rate", "200", "-n", "200", "-d", "10s", "-q", "-json", out)
	r := readReport[Report](t, out)
	checkDelivered(t, "load", r.Load, 200, 10)
	if r.Load.ServerCores <= 0 {
		t.Errorf("no server CPU from Centrifugo's /metrics")
	}
}

func TestCentrifugoConfig(t *testing.T) {
	stdout, _ := runCmd(t, "centrifugo-config")
	var cfg struct {
		HTTPServer struct {
			Address string
			Port    int
		} `json:"http_server"`
		Client struct {
			AllowedOrigins []string `json:"allowed_origins"`
		}
	}
	if err := json.Unmarshal([]byte(stdout), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if cfg.HTTPServer.Address != "127.0.0.1" || cfg.HTTPServer.Port != 8000 ||
		len(cfg.Client.AllowedOrigins) != 1 || cfg.Client.AllowedOrigins[0] != "http://127.0.0.1:8000" {
		t.Errorf("config %+v: want 127.0.0.1:8000, same-origin only", cfg)
	}
	var out, errb bytes.Buffer
	if rc := run(t.Context(), []string{"centrifugo-config", "-addr", "localhost"}, &out, &errb); rc != 1 ||
		!strings.Contains(errb.String(), `-addr "localhost"`) {
		t.Errorf("exit %d, stderr %q", rc, errb.String())
	}
}
