//go:build linux

package main

// Several nodes sharing one Redis (issue #6), end to end: real `linkwall
// serve --redis` nodes on 127.0.0.1:0, real WebSocket clients, one node
// SIGKILLed mid-stream, Redis restarted under running nodes.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/redis"
	"github.com/linkwall/linkwall/internal/redis/redistest"
	"github.com/linkwall/linkwall/internal/server"
)

const (
	// clusterWait bounds every wait of the cluster tests.
	clusterWait = 30 * time.Second
	// clusterWindow is how many messages a test client has in flight.
	clusterWindow = 5
)

// clusterLimits lets test clients send faster than people type.
var clusterLimits = server.Limits{SendRate: 10_000, SendBurst: 10_000, SessionRate: 1000, SessionBurst: 1000}

// clusterRedisURL returns a URL of the shared Redis with a key prefix of
// t's own (removed when t ends).
func clusterRedisURL(t testing.TB) string {
	t.Helper()
	base := redistest.URL(t)
	return withKeyPrefix(base, redistest.Prefix(t, base))
}

func withKeyPrefix(redisURL, prefix string) string {
	sep := "?"
	if strings.Contains(redisURL, "?") {
		sep = "&"
	}
	return redisURL + sep + "key_prefix=" + url.QueryEscape(prefix)
}

// startClusterNode runs `linkwall serve --redis redisURL` in this process.
func startClusterNode(t testing.TB, redisURL string) *Main {
	t.Helper()
	return startClusterNodeAt(t, "127.0.0.1:0", redisURL)
}

// startClusterNodeAt is startClusterNode listening on addr.
func startClusterNodeAt(t testing.TB, addr, redisURL string) *Main {
	t.Helper()
	m := NewMain()
	m.Logger = zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
	if err := m.ParseFlags(context.Background(), []string{"--addr", addr, "--redis", redisURL, "--walkthrough-step", "0"}); err != nil {
		t.Fatal(err)
	}
	m.Limits = clusterLimits
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("node: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// The environment variables that make TestClusterHelperNode a node.
const (
	clusterNodeEnv  = "LINKWALL_CLUSTER_NODE_REDIS"
	clusterAddrLine = "cluster-node-addr "
)

// TestClusterHelperNode is not a test of its own: startKillableNode runs
// the test binary again with only this function, which then serves as a
// node in a process of its own that the test can SIGKILL.
func TestClusterHelperNode(t *testing.T) {
	redisURL := os.Getenv(clusterNodeEnv)
	if redisURL == "" {
		t.Skip("helper process of the cluster tests")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	m := NewMain()
	m.Logger = zap.NewExample(zap.IncreaseLevel(zapcore.WarnLevel)) // to stdout, after the address line
	if err := m.ParseFlags(ctx, []string{"--addr", "127.0.0.1:0", "--redis", redisURL}); err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	m.Limits = clusterLimits
	if err := m.Run(ctx); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(clusterAddrLine + m.Addr())
	<-ctx.Done()
	_ = m.Close()
	os.Exit(0)
}

// killableNode is a node in a child process.
type killableNode struct {
	cmd  *exec.Cmd
	addr string
	out  *bytes.Buffer // its output after the address line
	done chan struct{}
}

func startKillableNode(t *testing.T, redisURL string) *killableNode {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterHelperNode$", "-test.v=false")
	cmd.Env = append(os.Environ(), clusterNodeEnv+"="+redisURL)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &killableNode{cmd: cmd, out: new(bytes.Buffer), done: make(chan struct{})}
	addrc := make(chan string, 1)
	var mu sync.Mutex
	go func() {
		defer close(n.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, clusterAddrLine); ok {
				addrc <- a
				continue
			}
			mu.Lock()
			n.out.WriteString(line + "\n")
			mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-n.done
	})
	select {
	case n.addr = <-addrc:
	case <-n.done:
		t.Fatalf("node process ended before listening:\n%s", n.out)
	case <-time.After(clusterWait):
		t.Fatal("node process did not start in time")
	}
	return n
}

// kill ends the node at once, as a crash or an OOM kill would: no close
// frames, no graceful anything.
func (n *killableNode) kill() error {
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-n.done
	return nil
}

// newBalancer is the load balancer of the compose file, in miniature: a
// reverse proxy (WebSocket upgrades included) that sends each new
// connection to the next node accepting connections, round robin.
func newBalancer(t *testing.T, nodes ...string) *httptest.Server {
	t.Helper()
	var next atomic.Uint32
	dialer := &net.Dialer{Timeout: time.Second}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: "linkwall"}) // the dialer picks the node
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{
			DisableKeepAlives: true, // a kept connection could point at a dead node
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				start := int(next.Add(1))
				var err error
				for i := range nodes {
					var c net.Conn
					if c, err = dialer.DialContext(ctx, network, nodes[(start+i)%len(nodes)]); err == nil {
						return c, nil
					}
				}
				return nil, err
			},
		},
		ErrorLog: zap.NewStdLog(zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))),
	}
	lb := httptest.NewServer(proxy)
	t.Cleanup(lb.Close)
	return lb
}

// clusterUser is a signed-in user.
type clusterUser struct {
	token string
	chat.User
}

func newClusterUser(t testing.TB, base, name string) *clusterUser {
	t.Helper()
	var r struct {
		Token string    `json:"token"`
		User  chat.User `json:"user"`
	}
	callAPI(t, base, "", "POST", "/api/v1/session", map[string]string{"name": name}, http.StatusCreated, &r)
	return &clusterUser{token: r.Token, User: r.User}
}

func clusterGroup(t testing.TB, base string, by *clusterUser, others ...*clusterUser) chat.Room {
	t.Helper()
	ids := []string{}
	for _, o := range others {
		ids = append(ids, o.ID)
	}
	var r struct{ Room chat.Room }
	callAPI(t, base, by.token, "POST", "/api/v1/rooms", map[string]any{"kind": "group", "name": "cluster", "members": ids}, http.StatusCreated, &r)
	return r.Room
}

// clusterFrame is a server → client object, as far as these tests look.
type clusterFrame struct {
	Type        string          `json:"type"`
	Raw         json.RawMessage `json:"message"` // a message object, or an error's text
	ClientMsgID string          `json:"client_msg_id"`
	Code        string          `json:"code"`
	Ref         string          `json:"ref"`

	Message *chat.Message `json:"-"` // Raw decoded, for "message"
}

// parseFrames decodes one WebSocket text message: objects separated by
// '\n'. A client must never meet an object it cannot read.
func parseFrames(data []byte) ([]clusterFrame, error) {
	var fs []clusterFrame
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		var f clusterFrame
		if err := json.Unmarshal(line, &f); err != nil {
			return nil, fmt.Errorf("object %q: %w", line, err)
		}
		if f.Type == "message" {
			f.Message = new(chat.Message)
			if err := json.Unmarshal(f.Raw, f.Message); err != nil {
				return nil, fmt.Errorf("message %q: %w", f.Raw, err)
			}
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// delivery is one message frame a client received, in arrival order.
type delivery struct {
	seq    int64
	id     string
	cmid   string
	resent bool // the client had re-sent this client_msg_id on a new connection
}

// chatClient behaves like the page and linkload: it sends its messages
// with client_msg_ids, a few in flight; when its connection drops it
// reconnects (through the balancer), resumes the room after the last seq
// it has, and re-sends what was not acknowledged, with the same ids.
type chatClient struct {
	t      *testing.T
	u      *clusterUser
	room   string
	send   int // how many messages this client sends
	expect int // how many messages the room will hold in the end

	// Written by run only; read after it returns.
	inOrder    []delivery // the room's messages as the client shows them: seq 1, 2, 3…
	acksAhead  []delivery // acks of re-sent messages that came before their seq was due
	dups       []delivery // seq already shown, not an ack of a re-sent message
	gaps       []delivery // seq past the next one, not an ack of a re-sent message
	errors     []string
	reconnects int
	resends    int // messages re-sent on a new connection

	acked atomic.Int64 // own messages acknowledged
}

func (c *chatClient) cmid(i int) string { return fmt.Sprintf("%s-%d", c.u.Name, i) }

// run talks to first, then, after a dropped connection, to again; it
// returns when the client has every message of the room and all of its
// own are acknowledged.
func (c *chatClient) run(ctx context.Context, first, again string) error {
	last := int64(0)
	next := 1                   // next own message to send
	pending := map[string]int{} // sent, unacknowledged: client_msg_id → index
	resent := map[string]bool{}
	var retry []int // refused with an error frame: send again
	addr := first
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (have %d/%d messages, %d/%d acked)", c.u.Name, ctx.Err(), last, c.expect, c.acked.Load(), c.send)
		}
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+addr+"/ws", http.Header{"Authorization": {"Bearer " + c.u.token}})
		addr = again
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		frames := make(chan clusterFrame, 1024)
		var badFrame error // written by the reader before it closes frames
		go func() {
			defer close(frames)
			for {
				_, data, err := ws.ReadMessage()
				if err != nil {
					return
				}
				fs, err := parseFrames(data)
				if err != nil {
					badFrame = err
					return
				}
				for _, f := range fs {
					frames <- f
				}
			}
		}()
		write := func(v any) { _ = ws.WriteJSON(v) } // a failed write shows as a dropped connection
		sendOwn := func(i int) {
			write(map[string]any{"type": "send", "room": c.room, "text": fmt.Sprintf("message %d of %s", i, c.u.Name), "client_msg_id": c.cmid(i)})
		}
		write(map[string]any{"type": "resume", "room": c.room, "after": last})
		// Re-send what the dead connection did not acknowledge, oldest first.
		var again []int
		for _, i := range pending {
			again = append(again, i)
		}
		slices.Sort(again)
		for _, i := range again {
			c.resends++
			resent[c.cmid(i)] = true
			sendOwn(i)
		}
		tick := time.NewTicker(2 * time.Millisecond)
	conn:
		for {
			if next > c.send && len(pending) == 0 && len(retry) == 0 && last >= int64(c.expect) {
				tick.Stop()
				ws.Close()
				for range frames {
				}
				return nil
			}
			select {
			case <-ctx.Done():
				tick.Stop()
				ws.Close()
				for range frames {
				}
				break conn
			case <-tick.C:
				switch {
				case len(retry) > 0:
					sendOwn(retry[0])
					retry = retry[1:]
				case next <= c.send && len(pending) < clusterWindow:
					pending[c.cmid(next)] = next
					sendOwn(next)
					next++
				}
			case f, ok := <-frames:
				if !ok {
					tick.Stop()
					ws.Close()
					if badFrame != nil {
						return fmt.Errorf("%s: %w", c.u.Name, badFrame)
					}
					c.reconnects++
					break conn
				}
				switch {
				case f.Type == "error":
					if i, ok := pending[f.Ref]; ok && f.Code != chat.EInvalid {
						retry = append(retry, i)
					} else {
						c.errors = append(c.errors, fmt.Sprintf("%s: %s", f.Code, f.Ref))
					}
				case f.Type == "message" && f.Message != nil && f.Message.Room == c.room:
					d := delivery{seq: f.Message.Seq, id: f.Message.ID, cmid: f.ClientMsgID, resent: resent[f.ClientMsgID]}
					if _, ok := pending[d.cmid]; ok && d.cmid != "" {
						delete(pending, d.cmid)
						c.acked.Add(1)
					}
					switch {
					case d.seq == last+1:
						c.inOrder = append(c.inOrder, d)
						last = d.seq
					case d.resent && d.seq > last+1:
						c.acksAhead = append(c.acksAhead, d)
					case d.resent:
						// The ack of a re-sent message that resume had
						// already shown: the same message again, by design.
						if c.inOrder[d.seq-1].id != d.id {
							c.dups = append(c.dups, d)
						}
					case d.seq <= last:
						c.dups = append(c.dups, d)
					default:
						c.gaps = append(c.gaps, d)
					}
				}
			}
		}
	}
}

// runClients runs the clients until they are done or clusterWait passes.
func runClients(t *testing.T, clients []*chatClient, first, again []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	for i, c := range clients {
		wg.Go(func() { errs[i] = c.run(ctx, first[i], again[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// checkRoom asserts what every client showed: seq 1…expect without gap or
// duplicate, the same message at each seq on every client, and each
// client_msg_id exactly once.
func checkRoom(t *testing.T, clients []*chatClient) {
	t.Helper()
	var ref []delivery
	for _, c := range clients {
		if len(c.dups) > 0 || len(c.gaps) > 0 || len(c.errors) > 0 {
			t.Errorf("%s: duplicates %v, gaps %v, error frames %v", c.u.Name, c.dups, c.gaps, c.errors)
		}
		if len(c.inOrder) != c.expect {
			t.Errorf("%s showed %d messages, want %d", c.u.Name, len(c.inOrder), c.expect)
			continue
		}
		if ref == nil {
			ref = c.inOrder
			continue
		}
		for i := range ref {
			if c.inOrder[i].id != ref[i].id {
				t.Fatalf("seq %d: %s shows message %s, %s shows %s", i+1, clients[0].u.Name, ref[i].id, c.u.Name, c.inOrder[i].id)
			}
		}
	}
	// Every sent client_msg_id once: take them from the senders' own copies.
	seen := map[string]int64{}
	for _, c := range clients {
		for _, d := range c.inOrder {
			if d.cmid == "" {
				continue
			}
			if s, ok := seen[d.cmid]; ok && s != d.seq {
				t.Errorf("client_msg_id %s stored twice: seq %d and %d", d.cmid, s, d.seq)
			}
			seen[d.cmid] = d.seq
		}
	}
	for _, c := range clients {
		for i := 1; i <= c.send; i++ {
			if _, ok := seen[c.cmid(i)]; !ok {
				t.Errorf("%s's message %s was lost", c.u.Name, c.cmid(i))
			}
		}
	}
}

// Clients on two nodes, one room: everybody sees every message, in the
// same order, once.
func TestClusterSameOrderOnEveryNode(t *testing.T) {
	redisURL := clusterRedisURL(t)
	a, b := startClusterNode(t, redisURL), startClusterNode(t, redisURL)
	nodes := []string{a.Addr(), b.Addr()}
	const perClient = 100
	names := []string{"alice", "bob", "carol", "dave"}
	users := make([]*clusterUser, len(names))
	for i, name := range names {
		users[i] = newClusterUser(t, "http://"+nodes[i%2], name) // sessions work on either node
	}
	room := clusterGroup(t, "http://"+nodes[1], users[0], users[1:]...)
	var clients []*chatClient
	var addrs []string
	for i, u := range users {
		clients = append(clients, &chatClient{t: t, u: u, room: room.ID, send: perClient, expect: perClient * len(users)})
		addrs = append(addrs, nodes[i%2])
	}
	runClients(t, clients, addrs, addrs)
	checkRoom(t, clients)
}

// A node is SIGKILLed while its clients send: they reconnect through the
// balancer to the other node, resume and re-send, and every client still
// shows every message once, in one order.
func TestClusterNodeKilled(t *testing.T) {
	redisURL := clusterRedisURL(t)
	doomed := startKillableNode(t, redisURL)
	survivor := startClusterNode(t, redisURL)
	lb := newBalancer(t, doomed.addr, survivor.Addr())
	lbAddr := strings.TrimPrefix(lb.URL, "http://")

	const perClient = 150
	names := []string{"alice", "bob", "carol"}
	first := []string{doomed.addr, survivor.Addr(), doomed.addr}
	users := make([]*clusterUser, len(names))
	for i, name := range names {
		users[i] = newClusterUser(t, "http://"+first[i], name)
	}
	room := clusterGroup(t, "http://"+doomed.addr, users[0], users[1:]...)
	var clients []*chatClient
	for _, u := range users {
		clients = append(clients, &chatClient{t: t, u: u, room: room.ID, send: perClient, expect: perClient * len(users)})
	}
	// Kill the node when a third of the messages are acknowledged.
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		deadline := time.Now().Add(clusterWait)
		for time.Now().Before(deadline) {
			var n int64
			for _, c := range clients {
				n += c.acked.Load()
			}
			if n >= perClient*int64(len(clients))/3 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := doomed.kill(); err != nil {
			t.Error(err)
		}
	}()
	runClients(t, clients, first, []string{lbAddr, lbAddr, lbAddr})
	<-killed
	checkRoom(t, clients)
	for i, c := range clients {
		if first[i] == doomed.addr && c.reconnects == 0 {
			t.Errorf("%s was on the killed node but never reconnected", c.u.Name)
		}
		t.Logf("%s: %d reconnects, %d messages re-sent, %d of their acks ahead of their seq", c.u.Name, c.reconnects, c.resends, len(c.acksAhead))
	}
	// What the clients showed is what Redis holds.
	var page struct{ Messages []chat.Message }
	callAPI(t, lb.URL, users[0].token, "GET", fmt.Sprintf("/api/v1/rooms/%s/messages?after=0&limit=1000", room.ID), nil, http.StatusOK, &page)
	if len(page.Messages) != len(clients[0].inOrder) {
		t.Fatalf("history holds %d messages, clients showed %d", len(page.Messages), len(clients[0].inOrder))
	}
	for i, m := range page.Messages {
		if m.Seq != int64(i+1) || m.ID != clients[0].inOrder[i].id {
			t.Fatalf("history seq %d is %s, clients showed %s", m.Seq, m.ID, clients[0].inOrder[i].id)
		}
	}
}

// Redis goes away under two running nodes: they report not-ready, refuse
// sends with an "unavailable" error frame, keep their WebSockets, and
// recover by themselves when Redis is back — sends, fan-out between the
// nodes and readiness.
func TestClusterRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a redis-server")
	}
	srv := redistest.Start(t)
	a, b := startClusterNode(t, srv.URL), startClusterNode(t, srv.URL)
	alice := newClusterUser(t, "http://"+a.Addr(), "alice")
	bob := newClusterUser(t, "http://"+b.Addr(), "bob")
	room := clusterGroup(t, "http://"+a.Addr(), alice, bob)
	wa := dialCluster(t, a.Addr(), alice)
	wb := dialCluster(t, b.Addr(), bob)
	wa.sendWait(t, room.ID, "before", "c-1")
	wb.messageWait(t, "c-1 on the other node", func(m *chat.Message) bool { return m.Text == "before" })

	srv.Kill()
	for _, n := range []*Main{a, b} {
		waitReady(t, n.Addr(), http.StatusServiceUnavailable)
	}
	wa.write(t, map[string]any{"type": "send", "room": room.ID, "text": "while down", "client_msg_id": "c-2"})
	f := wa.until(t, "an error frame for c-2", func(f clusterFrame) bool { return f.Type == "error" && f.Ref == "c-2" })
	if f.Code != chat.EUnavailable {
		t.Errorf("send with Redis down: error code %q, want %q", f.Code, chat.EUnavailable)
	}

	srv.Restart()
	for _, n := range []*Main{a, b} {
		waitReady(t, n.Addr(), http.StatusOK)
	}
	// The same connections work again, across nodes, both ways.
	wa.sendWait(t, room.ID, "after", "c-2")
	wb.messageWait(t, "c-2 on the other node", func(m *chat.Message) bool { return m.Text == "after" && m.Seq == 2 })
	wb.sendWait(t, room.ID, "reply", "c-3")
	wa.messageWait(t, "c-3 on the other node", func(m *chat.Message) bool { return m.Text == "reply" && m.Seq == 3 })
}

// waitReady polls a node's /readyz until it answers status.
func waitReady(t *testing.T, addr string, status int) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	got := 0
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			got = resp.StatusCode
			resp.Body.Close()
			if got == status {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s/readyz answered %d, want %d within %v", addr, got, status, clusterWait)
}

// clusterConn is a plain WebSocket client for the step-by-step test.
type clusterConn struct {
	ws     *websocket.Conn
	frames chan clusterFrame
}

func dialCluster(t testing.TB, addr string, u *clusterUser) *clusterConn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", http.Header{"Authorization": {"Bearer " + u.token}})
	if err != nil {
		t.Fatal(err)
	}
	c := &clusterConn{ws: ws, frames: make(chan clusterFrame, 1024)}
	t.Cleanup(func() { ws.Close() })
	go func() {
		defer close(c.frames)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			fs, err := parseFrames(data)
			if err != nil {
				t.Error(err)
				return
			}
			for _, f := range fs {
				c.frames <- f
			}
		}
	}()
	c.until(t, "hello", func(f clusterFrame) bool { return f.Type == "hello" })
	return c
}

func (c *clusterConn) write(t testing.TB, v any) {
	t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		t.Fatal(err)
	}
}

func (c *clusterConn) until(t testing.TB, what string, ok func(clusterFrame) bool) clusterFrame {
	t.Helper()
	deadline := time.After(clusterWait)
	for {
		select {
		case f, open := <-c.frames:
			if !open {
				t.Fatalf("waiting for %s: connection ended", what)
			}
			if ok(f) {
				return f
			}
		case <-deadline:
			t.Fatalf("waiting for %s: timeout", what)
		}
	}
}

func (c *clusterConn) messageWait(t testing.TB, what string, ok func(*chat.Message) bool) {
	t.Helper()
	c.until(t, what, func(f clusterFrame) bool { return f.Type == "message" && f.Message != nil && ok(f.Message) })
}

// sendWait sends and waits for the acknowledgement.
func (c *clusterConn) sendWait(t testing.TB, room, text, id string) {
	t.Helper()
	c.write(t, map[string]any{"type": "send", "room": room, "text": text, "client_msg_id": id})
	f := c.until(t, "the ack of "+id, func(f clusterFrame) bool {
		return (f.Type == "message" && f.ClientMsgID == id) || (f.Type == "error" && f.Ref == id)
	})
	if f.Type == "error" {
		t.Fatalf("send %s: %s", id, f.Code)
	}
}

// Events of other nodes may arrive out of seq order, late, or not at all
// (a node died between storing and publishing). A third "node" publishes
// straight into the event stream: seq 2 before 1, 4 without 3, then 3 late.
// The client sees 1 2 3 4 5, each once: the hub reorders, fills the gap
// from the store and drops the late copy.
func TestClusterEventsOutOfOrder(t *testing.T) {
	ctx := context.Background()
	redisURL := clusterRedisURL(t)
	node := startClusterNode(t, redisURL)
	base := "http://" + node.Addr()
	alice := newClusterUser(t, base, "alice")
	bob := newClusterUser(t, base, "bob")
	room := clusterGroup(t, base, alice, bob)
	wb := dialCluster(t, node.Addr(), bob)
	wb.write(t, map[string]any{"type": "resume", "room": room.ID, "after": 0})

	store, err := redis.Open(ctx, redisURL, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	other, err := redis.NewBroker(ctx, store, "other-node", func(chat.Event) {}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var evs []chat.Event
	for i := 1; i <= 5; i++ {
		m, _, err := store.Append(ctx, chat.Message{Room: room.ID, Sender: chat.Sender{ID: alice.ID, Name: alice.Name},
			Text: fmt.Sprint("m", i), Links: []bot.Link{}, Era: room.Era})
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(map[string]any{"type": "message", "message": m})
		evs = append(evs, chat.Event{Room: room.ID, Seq: m.Seq, Members: []string{bob.ID}, Payload: payload})
	}
	publish := func(seq int) {
		t.Helper()
		if err := other.Publish(ctx, evs[seq-1]); err != nil {
			t.Fatal(err)
		}
	}
	publish(2)
	publish(1)
	publish(4)
	var got []int64
	for len(got) < 4 {
		f := wb.until(t, "messages 1-4", func(f clusterFrame) bool { return f.Type == "message" })
		got = append(got, f.Message.Seq)
	}
	publish(3) // late: already filled from the store
	publish(5)
	f := wb.until(t, "message 5", func(f clusterFrame) bool { return f.Type == "message" })
	got = append(got, f.Message.Seq)
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
		t.Errorf("client saw seqs %v, want 1 2 3 4 5", got)
	}
	// Nothing else arrives (a duplicate 3 would by now).
	wb.write(t, map[string]any{"type": "ping"})
	if f := wb.until(t, "pong", func(f clusterFrame) bool { return f.Type == "pong" || f.Type == "message" }); f.Type != "pong" {
		t.Errorf("after 5: %s seq %d, want nothing more", f.Type, f.Message.Seq)
	}
}

// BenchmarkClusterCrossNode: one message from a client on one node to a
// client on the other, through Redis (store, event stream), sent and
// received one at a time: the latency a user on another node sees.
func BenchmarkClusterCrossNode(b *testing.B) {
	redisURL := clusterRedisURL(b)
	a, other := startClusterNode(b, redisURL), startClusterNode(b, redisURL)
	alice := newClusterUser(b, "http://"+a.Addr(), "alice")
	bob := newClusterUser(b, "http://"+other.Addr(), "bob")
	room := clusterGroup(b, "http://"+a.Addr(), alice, bob)
	wa, wb := dialCluster(b, a.Addr(), alice), dialCluster(b, other.Addr(), bob)
	wb.write(b, map[string]any{"type": "resume", "room": room.ID, "after": 0})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		wa.write(b, map[string]any{"type": "send", "room": room.ID, "text": "hi", "client_msg_id": fmt.Sprint(i)})
		wb.until(b, "the message", func(f clusterFrame) bool { return f.Type == "message" && f.Message.Seq == int64(i) })
	}
}

// An era changed through one node applies at once to messages sent through
// another: the room event drops the other node's cached copy of the room.
func TestClusterEraChangeSeenByOtherNode(t *testing.T) {
	redisURL := clusterRedisURL(t)
	a, b := startClusterNode(t, redisURL), startClusterNode(t, redisURL)
	baseA, baseB := "http://"+a.Addr(), "http://"+b.Addr()
	alice := newClusterUser(t, baseA, "alice")
	bob := newClusterUser(t, baseA, "bob")
	room := clusterGroup(t, baseA, alice, bob)
	onB := dialCluster(t, b.Addr(), bob)
	const taobao = "https://m.tb.cn/h.fXyZ123"
	outcome := func(m *chat.Message) bot.Outcome {
		for _, l := range m.Links {
			if l.Platform == "taobao" {
				return l.Outcome
			}
		}
		return ""
	}
	// Node B decides (and caches the room) under the default era: a hyperlink.
	onB.write(t, map[string]any{"type": "resume", "room": room.ID, "after": 0})
	onB.sendWait(t, room.ID, "before "+taobao, "before")
	var hist struct{ Messages []chat.Message }
	callAPI(t, baseB, bob.token, "GET", "/api/v1/rooms/"+room.ID+"/messages?after=0", nil, http.StatusOK, &hist)
	if got := outcome(&hist.Messages[0]); got != bot.Hyperlink {
		t.Fatalf("under the default era the Taobao link is %q, want hyperlink", got)
	}
	// Alice walls the room through node A; as soon as Bob's socket on B has
	// the room frame, his next message is decided under the new era.
	callAPI(t, baseA, alice.token, "PUT", "/api/v1/rooms/"+room.ID+"/era", map[string]string{"era": "walled"}, http.StatusOK, nil)
	onB.until(t, "the room frame", func(f clusterFrame) bool { return f.Type == "room" })
	onB.write(t, map[string]any{"type": "send", "room": room.ID, "text": "after " + taobao, "client_msg_id": "after"})
	f := onB.until(t, "the ack of after", func(f clusterFrame) bool { return f.Type == "message" && f.ClientMsgID == "after" })
	if got := outcome(f.Message); got != bot.Blocked {
		t.Fatalf("a message sent through node B right after node A walled the room: Taobao is %q, want blocked", got)
	}
}
