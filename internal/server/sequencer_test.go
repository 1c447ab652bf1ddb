package server

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/linkwall/linkwall/internal/chat"
)

// seqTestConn is a started connection of user "u" registered with s's hub.
func seqTestConn(t *testing.T, s *Server) *conn {
	t.Helper()
	c := newConn(s, nil, chat.User{ID: "u"})
	c.start(nil, nil)
	s.hub.add(c)
	return c
}

func seqEvents(room string, seq int64) []chat.Event {
	e := ev(room, seq)
	e.Members = []string{"u"}
	return []chat.Event{e}
}

func TestSequencerPublishesInOrder(t *testing.T) {
	tests := []struct {
		name string
		in   []int64
		want []int64 // delivered at once, before any hold ends
	}{
		{"in order", []int64{5, 6, 7}, []int64{5, 6, 7}},
		{"a commit group's callers race", []int64{5, 7, 8, 6, 9}, []int64{5, 6, 7, 8, 9}},
		{"held behind the missing seq", []int64{5, 7, 8}, []int64{5}},
		{"late after the first", []int64{6, 5}, []int64{6, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Limits{})
			c := seqTestConn(t, s)
			for _, seq := range tt.in {
				s.seq.publish("r", seq, seqEvents("r", seq))
			}
			// The connection tracks the room from the first event; a late
			// event below it is still delivered once (base logic).
			if got := queued(t, c); !slices.Equal(got, tt.want) {
				t.Errorf("delivered %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSequencerHoldEnds: a seq that is never published (its sender went
// away between commit and publish) holds the room for seqHoldWait only;
// then the later events go out and the connection fills the hole itself.
func TestSequencerHoldEnds(t *testing.T) {
	s := newTestServer(t, Limits{})
	var mu sync.Mutex
	var got []int64
	rec := &recordingHub{mu: &mu, got: &got}
	s.seq.deliver = rec.deliver
	s.seq.publish("r", 1, seqEvents("r", 1))
	s.seq.publish("r", 3, seqEvents("r", 3))
	s.seq.publish("r", 4, seqEvents("r", 4))
	mu.Lock()
	if want := []int64{1}; !slices.Equal(got, want) {
		t.Errorf("before the hold ends: %v, want %v", got, want)
	}
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.seq.publish("r", 2, seqEvents("r", 2)) // late: still delivered
	s.seq.publish("r", 5, seqEvents("r", 5))
	mu.Lock()
	defer mu.Unlock()
	if want := []int64{1, 3, 4, 2, 5}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

type recordingHub struct {
	mu  *sync.Mutex
	got *[]int64
}

func (r *recordingHub) deliver(ev chat.Event) {
	r.mu.Lock()
	*r.got = append(*r.got, ev.Seq)
	r.mu.Unlock()
}

// TestSequencerConcurrent publishes a room's seqs from many goroutines in
// random completion order: the connection gets them all, in order, with
// nothing held.
func TestSequencerConcurrent(t *testing.T) {
	s := newTestServer(t, Limits{MaxQueueBytes: 1 << 30})
	c := seqTestConn(t, s)
	const n = 2000
	s.seq.publish("r", 1, seqEvents("r", 1))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for seq := int64(2 + g); seq <= n; seq += 8 {
				s.seq.publish("r", seq, seqEvents("r", seq))
			}
		})
	}
	wg.Wait()
	got := queued(t, c)
	if len(got) != n {
		t.Fatalf("delivered %d events, want %d", len(got), n)
	}
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("event %d is seq %d: out of order", i, seq)
		}
	}
}
