package redis

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/redis/redistest"
)

// waitFor bounds every wait for an event in these tests.
const waitFor = 5 * time.Second

// recorder is a hub stand-in: it records what a broker delivers.
type recorder struct {
	mu     sync.Mutex
	events []chat.Event
	more   chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) deliver(ev chat.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []chat.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chat.Event(nil), r.events...)
}

// waitN waits until at least n events arrived and returns them.
func (r *recorder) waitN(t *testing.T, n int) []chat.Event {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		if evs := r.snapshot(); len(evs) >= n {
			return evs
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("got %d events within %v, want %d", len(r.snapshot()), waitFor, n)
		}
	}
}

func newBrokerT(t *testing.T, s *Store, node string) (*Broker, *recorder) {
	t.Helper()
	rec := newRecorder()
	b, err := NewBroker(context.Background(), s, node, rec.deliver, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("NewBroker(%s): %v", node, err)
	}
	t.Cleanup(func() { b.Close() })
	return b, rec
}

func event(room string, seq int64, members ...string) chat.Event {
	return chat.Event{Room: room, Seq: seq, Members: members, Payload: fmt.Appendf(nil, `{"type":"message","seq":%d}`, seq)}
}

// Two nodes: each delivers its own events locally at once and exactly
// once, and the other node's in the order they were published.
func TestBrokerTwoNodes(t *testing.T) {
	ctx := context.Background()
	s := openT(t)
	defer s.Close()
	a, recA := newBrokerT(t, s, "a")
	b, recB := newBrokerT(t, s, "b")

	const n = 300
	for i := 1; i <= n; i++ {
		if err := a.Publish(ctx, event("r1", int64(i), "alice", "bob")); err != nil {
			t.Fatal(err)
		}
		if len(recA.snapshot()) != i {
			t.Fatalf("Publish did not deliver locally at once")
		}
	}
	if err := b.Publish(ctx, chat.Event{Room: "r2", Members: []string{"carol"}, Payload: []byte(`{"type":"room"}`)}); err != nil {
		t.Fatal(err)
	}
	got := recB.waitN(t, n+1)
	var fromA []chat.Event
	own := 0
	for _, ev := range got {
		if ev.Room == "r2" {
			own++
			continue
		}
		fromA = append(fromA, ev)
	}
	if own != 1 {
		t.Errorf("node b delivered its own event %d times", own)
	}
	for i, ev := range fromA {
		want := event("r1", int64(i+1), "alice", "bob")
		if ev.Room != want.Room || ev.Seq != want.Seq || string(ev.Payload) != string(want.Payload) || len(ev.Members) != 2 {
			t.Fatalf("node b event %d from a = %+v, want %+v", i, ev, want)
		}
	}
	recA.waitN(t, n+1)
	time.Sleep(100 * time.Millisecond) // a duplicate would show up by now
	if evs := recA.snapshot(); len(evs) != n+1 {
		t.Errorf("node a got %d events, want %d: its own once, b's once", len(evs), n+1)
	}
	if evs := recB.snapshot(); len(evs) != n+1 {
		t.Errorf("node b got %d events, want %d", len(evs), n+1)
	}
}

// Brokers under different prefixes do not hear each other.
func TestBrokerPrefixesIsolated(t *testing.T) {
	ctx := context.Background()
	s1, s2 := openT(t), openT(t)
	defer s1.Close()
	defer s2.Close()
	a, _ := newBrokerT(t, s1, "a")
	_, recB := newBrokerT(t, s2, "b")
	_, recC := newBrokerT(t, s1, "c")
	if err := a.Publish(ctx, event("r", 1, "x")); err != nil {
		t.Fatal(err)
	}
	recC.waitN(t, 1)
	time.Sleep(100 * time.Millisecond)
	if evs := recB.snapshot(); len(evs) != 0 {
		t.Errorf("a broker under another prefix got %v", evs)
	}
}

// Close ends the reader promptly even while it waits in XREAD BLOCK.
func TestBrokerCloseIsPrompt(t *testing.T) {
	s := openT(t)
	defer s.Close()
	b, _ := newBrokerT(t, s, "a")
	time.Sleep(50 * time.Millisecond) // let the reader block
	start := time.Now()
	b.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	b.Close() // idempotent
}

// The reader continues from the last event it saw: what was published
// while it could not read (here: before it started) is delivered, in order.
func TestBrokerReaderCatchesUp(t *testing.T) {
	ctx := context.Background()
	s := openT(t)
	defer s.Close()
	a, _ := newBrokerT(t, s, "a")
	if err := a.Publish(ctx, event("r", 1, "x")); err != nil {
		t.Fatal(err)
	}
	b, recB := newBrokerT(t, s, "b")
	last, err := b.lastID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	for i := 2; i <= 4; i++ { // b is not reading
		if err := a.Publish(ctx, event("r", int64(i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	// A reader restarted from b's last position, as run does after an error.
	opts := *s.opts
	sub := goredis.NewClient(&opts)
	b2 := &Broker{client: s.client, sub: sub, key: s.eventsKey(), node: "b", deliver: recB.deliver,
		log: zaptest.NewLogger(t), done: make(chan struct{})}
	runCtx, cancel := context.WithCancel(ctx)
	b2.cancel = cancel
	go b2.run(runCtx, last)
	defer b2.Close()
	got := recB.waitN(t, 3)
	for i, ev := range got {
		if ev.Seq != int64(i+2) {
			t.Fatalf("caught up with seqs %v, want 2 3 4", seqs(got))
		}
	}
}

func seqs(evs []chat.Event) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

// With Redis down, Publish still delivers locally and reports
// EUnavailable; when Redis is back, events flow between nodes again
// without any restart of the brokers.
func TestBrokerRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a redis-server")
	}
	ctx := context.Background()
	srv := redistest.Start(t)
	s, err := Open(ctx, srv.URL, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, recA := newBrokerT(t, s, "a")
	_, recB := newBrokerT(t, s, "b")
	if err := a.Publish(ctx, event("r", 1, "x")); err != nil {
		t.Fatal(err)
	}
	recB.waitN(t, 1)

	srv.Kill()
	err = a.Publish(ctx, event("r", 2, "x"))
	if code := chat.ErrorCode(err); code != chat.EUnavailable {
		t.Errorf("Publish with Redis down: %v (code %q), want %s", err, code, chat.EUnavailable)
	}
	if n := len(recA.snapshot()); n != 2 {
		t.Errorf("node a delivered %d events locally, want 2 (Redis down must not stop local delivery)", n)
	}
	time.Sleep(300 * time.Millisecond) // the readers fail and back off

	srv.Restart()
	deadline := time.Now().Add(waitFor)
	for seq := int64(3); ; seq++ {
		err := a.Publish(ctx, event("r", seq, "x"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish still failing %v after Redis came back: %v", waitFor, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := recB.waitN(t, 2)
	if last := got[len(got)-1]; last.Seq < 3 {
		t.Errorf("node b's events after the restart: %v", seqs(got))
	}
}

func BenchmarkPublish(b *testing.B) {
	ctx := context.Background()
	s := openT(b)
	defer s.Close()
	rec := newRecorder()
	br, err := NewBroker(ctx, s, "a", func(chat.Event) {}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	other, err := NewBroker(ctx, s, "b", rec.deliver, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer other.Close()
	ev := event("room-0123456789", 1, "alice-0123456789", "bob-0123456789")
	ev.Payload = make([]byte, 400)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := br.Publish(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	ev := event("room-0123456789", 1, "alice-0123456789", "bob-0123456789")
	ev.Payload = make([]byte, 400)
	raw := string(encodeEvent(nil, "node", &ev))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeEvent(raw); err != nil {
			b.Fatal(err)
		}
	}
}
