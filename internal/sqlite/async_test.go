package sqlite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
)

// TestAppendAsync: AppendAsync returns while the WAL's sync is held (it
// queues, it does not wait); done runs once per append, only after the
// sync and after then; appends queued by one goroutine get ascending seqs
// in that order; a repeated client_msg_id is answered as a duplicate
// without then; and Close commits and answers everything queued before
// it, while AppendAsync after Close fails without calling done.
func TestAppendAsync(t *testing.T) {
	ctx := context.Background()
	var hold atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	s, alice, room := openHooked(t, func() error {
		if hold.Load() {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
		return nil
	})

	type answer struct {
		m      chat.Message
		dup    bool
		err    error
		thenOK bool // then ran for this message before done
	}
	const n = 100
	const repeat, of = 60, 10 // message 60 repeats message 10's client_msg_id
	var mu sync.Mutex
	answers := make([][]answer, n)
	thens := make([]int, n)
	var wg sync.WaitGroup
	hold.Store(true)
	queue := func(i int, cmid string) error {
		m := chattest.Msg(room, alice, fmt.Sprintf("m%d", i))
		m.ClientMsgID = cmid
		wg.Add(1)
		err := s.AppendAsync(ctx, m, func(chat.Message) {
			mu.Lock()
			thens[i]++
			mu.Unlock()
		}, func(m chat.Message, dup bool, err error) {
			mu.Lock()
			answers[i] = append(answers[i], answer{m, dup, err, thens[i] == 1})
			mu.Unlock()
			wg.Done()
		})
		if err != nil {
			wg.Done()
		}
		return err
	}
	start := time.Now()
	for i := range n {
		cmid := fmt.Sprintf("c%d", i)
		if i == repeat {
			cmid = fmt.Sprintf("c%d", of)
		}
		if err := queue(i, cmid); err != nil {
			t.Fatal(err)
		}
	}
	queued := time.Since(start)
	<-entered
	time.Sleep(20 * time.Millisecond) // time enough for an answer that does not wait for the sync
	mu.Lock()
	for i := range n {
		if len(answers[i]) != 0 {
			t.Errorf("append %d answered while the sync was held", i)
		}
	}
	mu.Unlock()
	hold.Store(false)
	close(release)
	wg.Wait()
	t.Logf("%d appends queued in %v with the sync held", n, queued)

	last := int64(0)
	for i := range n {
		if len(answers[i]) != 1 {
			t.Fatalf("append %d answered %d times, want once", i, len(answers[i]))
		}
		a := answers[i][0]
		if a.err != nil {
			t.Fatalf("append %d: %v", i, a.err)
		}
		if i == repeat {
			if !a.dup || a.m.Seq != answers[of][0].m.Seq || thens[i] != 0 {
				t.Errorf("repeat of %d: dup %v seq %d then ran %d times, want the stored message (seq %d), no then",
					of, a.dup, a.m.Seq, thens[i], answers[of][0].m.Seq)
			}
			continue
		}
		if a.dup || !a.thenOK || a.m.Seq <= last {
			t.Errorf("append %d: dup %v, then before done %v, seq %d after %d", i, a.dup, a.thenOK, a.m.Seq, last)
		}
		last = a.m.Seq
	}

	// Close with appends queued behind a held sync: all of them are
	// committed and answered before Close returns.
	hold.Store(true)
	release = make(chan struct{})
	const more = 20
	answers = make([][]answer, more)
	thens = make([]int, more)
	for i := range more {
		if err := queue(i, fmt.Sprintf("close-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	<-entered
	hold.Store(false)
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for i := range more {
		if len(answers[i]) != 1 || answers[i][0].err != nil || answers[i][0].m.Seq <= last {
			t.Fatalf("append %d queued before Close: answers %+v", i, answers[i])
		}
		last = answers[i][0].m.Seq
	}
	err := s.AppendAsync(ctx, chattest.Msg(room, alice, "late"), nil, func(chat.Message, bool, error) {
		t.Error("done ran for an append refused after Close")
	})
	if chat.ErrorCode(err) != chat.EUnavailable {
		t.Errorf("AppendAsync after Close: %v, want %s", err, chat.EUnavailable)
	}
}
