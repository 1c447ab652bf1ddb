package redis

import (
	"context"
	"fmt"
	"math"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
	"github.com/linkwall/linkwall/internal/redis/redistest"
)

// openT opens a Store on the shared Redis under a prefix of t's own.
func openT(t testing.TB, options ...Option) *Store {
	t.Helper()
	url := redistest.URL(t)
	options = append([]Option{WithPrefix(redistest.Prefix(t, url))}, options...)
	s, err := Open(context.Background(), url, zaptest.NewLogger(t), options...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	chattest.TestStore(t, func(t *testing.T) chat.Store { return openT(t) })
}

func TestOpenBadURL(t *testing.T) {
	for _, url := range []string{"", "http://127.0.0.1:6379", "redis://127.0.0.1:6379/notadb",
		"redis://127.0.0.1:6379/0?max_messages=0", "redis://127.0.0.1:6379/0?max_messages=ten"} {
		if s, err := Open(context.Background(), url, nil); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", url)
		}
	}
}

func TestPrefixFromURL(t *testing.T) {
	url := redistest.URL(t)
	prefix := redistest.Prefix(t, url)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	s, err := Open(context.Background(), url+sep+"key_prefix="+neturl.QueryEscape(prefix)+"&dial_timeout=2s&max_messages=7", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.prefix != prefix || s.opts.DialTimeout != 2*time.Second || s.max != 7 {
		t.Errorf("prefix %q, dial timeout %v, max %d; want %q, 2s, 7", s.prefix, s.opts.DialTimeout, s.max, prefix)
	}
	chattest.NewUser(t, s, "alice", 0)
	if n, err := s.client.Exists(context.Background(), prefix+"users").Result(); err != nil || n != 1 {
		t.Errorf("no %susers key after CreateUser: %d, %v", prefix, n, err)
	}
}

func TestCutParams(t *testing.T) {
	for _, tc := range []struct {
		in, url, prefix string
		max             int64
		bad             bool
	}{
		{in: "redis://h:6379/0", url: "redis://h:6379/0", prefix: DefaultPrefix},
		{in: "redis://h:6379/0?dial_timeout=2s", url: "redis://h:6379/0?dial_timeout=2s", prefix: DefaultPrefix},
		{in: "redis://h:6379/0?key_prefix=demo%3A", url: "redis://h:6379/0", prefix: "demo:"},
		{in: "redis://h:6379/0?key_prefix=", url: "redis://h:6379/0", prefix: ""},
		{in: "redis://h/0?max_messages=500&dial_timeout=2s", url: "redis://h/0?dial_timeout=2s", prefix: DefaultPrefix, max: 500},
		{in: "redis://u:p@h/1?key_prefix=a&max_messages=1", url: "redis://u:p@h/1", prefix: "a", max: 1},
		{in: "redis://h/0?max_messages=0", bad: true},
		{in: "redis://h/0?max_messages=-5", bad: true},
		{in: "redis://h/0?max_messages=1e4", bad: true},
		{in: "redis://h/0?max_messages=", bad: true},
		{in: "redis://h/0?max_messages=99999999999999999999", bad: true},
		{in: "redis://h/%zz", bad: true},
	} {
		url, p, err := cutParams(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("cutParams(%q) = %q, %+v; want an error", tc.in, url, p)
			}
			continue
		}
		if err != nil || url != tc.url || p.prefix != tc.prefix || p.max != tc.max {
			t.Errorf("cutParams(%q) = %q, %+v, %v; want %q, prefix %q, max %d", tc.in, url, p, err, tc.url, tc.prefix, tc.max)
		}
	}
}

// FuzzCutParams: never panics; what it hands to go-redis carries neither
// of its own parameters, and a retention it accepts is at least 1.
func FuzzCutParams(f *testing.F) {
	for _, s := range []string{"redis://h:6379/0?key_prefix=a&max_messages=5", "redis://h/0?max_messages=x", "rediss://u:p@h/0?dial_timeout=1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		url, p, err := cutParams(in)
		if err != nil {
			return
		}
		if orig, err := neturl.Parse(in); err == nil && orig.Query().Has(maxParam) != (p.max >= 1) {
			t.Fatalf("cutParams(%q): max %d", in, p.max)
		}
		if u, err := neturl.Parse(url); err == nil {
			if q := u.Query(); q.Has(prefixParam) || q.Has(maxParam) {
				t.Fatalf("cutParams(%q) = %q: a parameter of its own is left in", in, url)
			}
		}
	})
}

func TestOpenUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Open(context.Background(), "redis://127.0.0.1:1/0", nil)
	if err == nil {
		t.Fatal("Open of a port nobody listens on succeeded")
	}
	if code := chat.ErrorCode(err); code != chat.EUnavailable {
		t.Errorf("Open: %v (code %q), want %s", err, code, chat.EUnavailable)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open took %v to fail, want about a dial timeout", d)
	}
}

// Two Stores on one Redis are two nodes: one sees what the other wrote,
// seqs interleave without gap, and a direct room is one room.
func TestTwoNodesShareState(t *testing.T) {
	ctx := context.Background()
	url := redistest.URL(t)
	prefix := redistest.Prefix(t, url)
	var nodes [2]*Store
	for i := range nodes {
		s, err := Open(ctx, url, zaptest.NewLogger(t), WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		nodes[i] = s
	}
	a, b := nodes[0], nodes[1]
	alice := chattest.NewUser(t, a, "alice", 0)
	bob := chattest.NewUser(t, b, "bob", 1)
	if u, err := b.UserBySession(ctx, []byte("tok-alice")); err != nil || u.ID != alice.ID {
		t.Fatalf("node b: session of alice = %+v, %v", u, err)
	}
	d1, err := a.CreateRoom(ctx, chat.Room{Kind: chat.Direct, Members: []string{alice.ID, bob.ID}, Era: "walled", Lang: "en"})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := b.CreateRoom(ctx, chat.Room{Kind: chat.Direct, Members: []string{bob.ID, alice.ID}, Era: "open", Lang: "zh"})
	if err != nil || d2.ID != d1.ID {
		t.Fatalf("node b: direct room = %s, %v; want node a's %s", d2.ID, err, d1.ID)
	}
	if _, err := b.SetRoomEra(ctx, d1.ID, "open"); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Room(ctx, d1.ID); err != nil || r.Era != "open" {
		t.Errorf("node a: room after node b set its era = %+v, %v", r, err)
	}

	const perNode = 200
	var wg sync.WaitGroup
	for i, s := range nodes {
		wg.Go(func() {
			for j := range perNode {
				m := chattest.Msg(d1.ID, alice, fmt.Sprintf("n%d-%d", i, j))
				m.ClientMsgID = fmt.Sprintf("n%d-%d", i, j)
				if _, _, err := s.Append(ctx, m); err != nil {
					t.Errorf("node %d: Append: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, s := range nodes {
		ms, err := s.Messages(ctx, d1.ID, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 2*perNode {
			t.Fatalf("node %d reads %d messages, want %d", i, len(ms), 2*perNode)
		}
		for k, m := range ms {
			if m.Seq != int64(k+1) {
				t.Fatalf("node %d: message %d has seq %d", i, k, m.Seq)
			}
		}
	}
}

// Trimming keeps the last max messages (in batches), forgets the
// client_msg_ids of trimmed messages only, and a resume from before the
// retained range gets what is still there.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	const max = 10
	s := openT(t, WithMaxMessages(max))
	defer s.Close()
	alice := chattest.NewUser(t, s, "alice", 0)
	r := chattest.NewGroup(t, s, "g", alice.ID)
	const n = max + trimBatch + 5 // one trim happens on message max+trimBatch+1
	for i := 1; i <= n; i++ {
		m := chattest.Msg(r.ID, alice, fmt.Sprint("m", i))
		m.ClientMsgID = fmt.Sprint("c", i)
		got, _, err := s.Append(ctx, m)
		if err != nil || got.Seq != int64(i) {
			t.Fatalf("Append #%d: seq %d, %v", i, got.Seq, err)
		}
	}
	ms, err := s.Messages(ctx, r.ID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// Message max+trimBatch+1 trimmed the stream to its last max messages,
	// trimBatch+2…max+trimBatch+1; four more followed.
	first := int64(trimBatch + 2)
	if len(ms) != int(n-first+1) || ms[0].Seq != first || ms[len(ms)-1].Seq != n {
		t.Fatalf("retained seqs %d..%d (%d), want %d..%d", ms[0].Seq, ms[len(ms)-1].Seq, len(ms), first, n)
	}
	if ms, err := s.Messages(ctx, r.ID, math.MaxInt64, 10); err != nil || len(ms) != 0 {
		t.Errorf("Messages(after MaxInt64) = %d messages, %v; want none", len(ms), err)
	}
	// Resuming from inside the trimmed range: what is left, in order.
	ms, err = s.Messages(ctx, r.ID, 3, 5)
	if err != nil || len(ms) != 5 || ms[0].Seq != first {
		t.Fatalf("Messages(after 3) = %d messages from seq %d, %v; want 5 from %d", len(ms), ms[0].Seq, err, first)
	}
	dedupLen, err := s.client.HLen(ctx, s.dedupKey(r.ID)).Result()
	if err != nil || dedupLen != int64(n-first+1) {
		t.Errorf("dedup entries = %d, %v; want one per retained message, %d", dedupLen, err, n-first+1)
	}
	// A retained client_msg_id is still a duplicate…
	m := chattest.Msg(r.ID, alice, "again")
	m.ClientMsgID = fmt.Sprint("c", n)
	if got, dup, err := s.Append(ctx, m); err != nil || !dup || got.Seq != n || got.Text != fmt.Sprint("m", n) {
		t.Errorf("resend of a retained message: %+v dup=%v %v", got, dup, err)
	}
	// …a trimmed one is a new message.
	m.ClientMsgID = "c1"
	if got, dup, err := s.Append(ctx, m); err != nil || dup || got.Seq != n+1 {
		t.Errorf("resend of a trimmed message: seq %d dup=%v %v; want a new message", got.Seq, dup, err)
	}
}

// Stored and read back, a message keeps everything but nil vs empty links.
func TestMessageRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openT(t)
	defer s.Close()
	alice := chattest.NewUser(t, s, "alice", 0)
	r := chattest.NewGroup(t, s, "g", alice.ID)
	sent := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	m := chat.Message{Room: r.ID, Sender: chat.Sender{ID: alice.ID, Name: "alice"}, Text: "héllo \x00 \"q\" 淘宝",
		Era: "walled", SentAt: sent, ClientMsgID: "x\ny"}
	got, _, err := s.Append(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Messages(ctx, r.ID, 0, 1)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Messages = %v, %v", ms, err)
	}
	back := ms[0]
	if back.ID != got.ID || back.Text != m.Text || back.ClientMsgID != m.ClientMsgID || !back.SentAt.Equal(sent) ||
		back.SentAt.Location() != time.UTC || back.Room != r.ID || back.Seq != 1 {
		t.Errorf("read back %+v, want %+v", back, got)
	}
}

// With Redis gone, every method fails quickly with EUnavailable; when it
// is back, the same Store works again without being reopened.
func TestRedisDownAndBack(t *testing.T) {
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
	alice := chattest.NewUser(t, s, "alice", 0)
	r := chattest.NewGroup(t, s, "g", alice.ID)
	if _, _, err := s.Append(ctx, chattest.Msg(r.ID, alice, "before")); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	for name, call := range map[string]func(ctx context.Context) error{
		"Ping": s.Ping,
		"Append": func(ctx context.Context) error {
			_, _, err := s.Append(ctx, chattest.Msg(r.ID, alice, "while down"))
			return err
		},
		"Messages": func(ctx context.Context) error { _, err := s.Messages(ctx, r.ID, 0, 10); return err },
		"Room":     func(ctx context.Context) error { _, err := s.Room(ctx, r.ID); return err },
		"Rooms":    func(ctx context.Context) error { _, err := s.Rooms(ctx, alice.ID); return err },
		"UserBySession": func(ctx context.Context) error {
			_, err := s.UserBySession(ctx, []byte("tok-alice"))
			return err
		},
	} {
		start := time.Now()
		err := call(ctx)
		if code := chat.ErrorCode(err); code != chat.EUnavailable {
			t.Errorf("%s with Redis down: %v (code %q), want %s", name, err, code, chat.EUnavailable)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s with Redis down took %v", name, d)
		}
	}

	srv.Restart()
	// The first command may meet a pooled connection to the dead server.
	var pingErr error
	for range 20 {
		if pingErr = s.Ping(ctx); pingErr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pingErr != nil {
		t.Fatalf("Ping after Redis came back: %v", pingErr)
	}
	got, _, err := s.Append(ctx, chattest.Msg(r.ID, alice, "after"))
	if err != nil || got.Seq != 2 {
		t.Fatalf("Append after Redis came back: seq %d, %v; want 2 (history kept by the AOF)", got.Seq, err)
	}
	if u, err := s.UserBySession(ctx, []byte("tok-alice")); err != nil || u.ID != alice.ID {
		t.Errorf("session after restart: %+v, %v", u, err)
	}
}

func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	s := openT(b)
	defer s.Close()
	alice := chattest.NewUser(b, s, "alice", 0)
	r := chattest.NewGroup(b, s, "g", alice.ID)
	m := chattest.Msg(r.ID, alice, "hello https://item.jd.com/1.html")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Append(ctx, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkMessages(b *testing.B) {
	ctx := context.Background()
	s := openT(b)
	defer s.Close()
	alice := chattest.NewUser(b, s, "alice", 0)
	r := chattest.NewGroup(b, s, "g", alice.ID)
	for range 200 {
		if _, _, err := s.Append(ctx, chattest.Msg(r.ID, alice, "hello https://item.jd.com/1.html")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if ms, err := s.Messages(ctx, r.ID, 100, 100); err != nil || len(ms) != 100 {
			b.Fatal(len(ms), err)
		}
	}
}

// A session lives chat.SessionTTL in Redis and is gone after it.
func TestSessionExpires(t *testing.T) {
	s := openT(t)
	defer s.Close()
	ctx := context.Background()
	u := chat.User{ID: "u-ttl", Name: "ttl"}
	hash := []byte("session-hash-ttl")
	if err := s.CreateUser(ctx, u, hash); err != nil {
		t.Fatal(err)
	}
	ttl, err := s.client.PTTL(ctx, s.sessionKey(hash)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= chat.SessionTTL-time.Minute || ttl > chat.SessionTTL {
		t.Fatalf("session key TTL %v, want about %v", ttl, chat.SessionTTL)
	}
	// What Redis does when the time has come.
	if err := s.client.PExpire(ctx, s.sessionKey(hash), time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := s.UserBySession(ctx, hash); chat.ErrorCode(err) != chat.EUnauthorized {
		t.Fatalf("UserBySession after expiry: %v, want unauthorized", err)
	}
	if _, err := s.User(ctx, u.ID); err != nil {
		t.Fatalf("the user outlives the session: %v", err)
	}
}
