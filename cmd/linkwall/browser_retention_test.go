package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/linkwall/linkwall/internal/redis/redistest"
)

// TestBrowserResumeAfterRetention: when the store keeps only a room's
// latest messages, the page's history starts above seq 1, and a page that
// reconnects asks only for what came after the last message it has, not
// for everything the store still keeps.
func TestBrowserResumeAfterRetention(t *testing.T) {
	requireChromium(t)
	base := redistest.URL(t)
	const kept = 5
	redisURL := withKeyPrefix(base, redistest.Prefix(t, base)) + fmt.Sprintf("&max_messages=%d", kept)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	node := startClusterNodeAt(t, "127.0.0.1:0", redisURL)
	addr := node.Addr()
	site := "http://" + addr

	browser := newBrowser(t, ctx)
	alice, carol, room := aliceWithCarol(t, browser, site, "Archive")
	carol.dial(t)
	const sent = 120 // past the retention and its trim batch
	for i := 1; i <= sent; i++ {
		carol.send(t, room, fmt.Sprintf("old %d", i))
	}
	carol.close()
	var page struct{ Messages []struct{ Seq int } }
	callAPI(t, site, carol.token, http.MethodGet, "/api/v1/rooms/"+room+"/messages?after=0", nil, 0, &page)
	first := page.Messages[0].Seq
	if first <= 1 || page.Messages[len(page.Messages)-1].Seq != sent {
		t.Fatalf("the store keeps seqs %d..%d of %d; the test needs the oldest trimmed", first, page.Messages[len(page.Messages)-1].Seq, sent)
	}

	// A page that was open meanwhile holds every message it saw live: load it afresh.
	alice.do(chromedp.Reload())
	alice.waitFor("the socket's hello", `document.body.dataset.ws === "up"`)
	alice.openRoom(room)
	alice.waitFor("the retained history", fmt.Sprintf(`document.querySelectorAll(".messages [data-seq]").length === %d`, len(page.Messages)))
	// Record every resume the page asks for from now on.
	alice.do(chromedp.Evaluate[chromedp.Void](`(() => {
		window.resumes = [];
		const send = WebSocket.prototype.send;
		WebSocket.prototype.send = function (data) {
			try { const f = JSON.parse(data); if (f.type === "resume") window.resumes.push(f); } catch {}
			return send.call(this, data);
		};
	})()`))

	// The page's server goes away; Carol goes on through another node.
	if err := node.Close(); err != nil {
		t.Fatalf("close the node: %v", err)
	}
	alice.waitFor("the reconnecting banner", `document.body.dataset.ws === "down"`)
	other := startClusterNode(t, redisURL)
	carol.base = "http://" + other.Addr()
	carol.dial(t)
	carol.send(t, room, "while away")
	carol.close()
	startClusterNodeAt(t, addr, redisURL)
	alice.waitFor("the message sent while away", `[...document.querySelectorAll(".messages [data-seq]")].some(e => e.textContent.includes("while away"))`)

	type resume struct {
		Room  string
		After int
	}
	var asked []resume
	for _, r := range eval[[]resume](alice, `window.resumes`) {
		if r.Room == room {
			asked = append(asked, r)
		}
	}
	if len(asked) != 1 || asked[0].After != sent {
		t.Errorf("the page resumed the room with %+v; want once, after seq %d (its last message)", asked, sent)
	}
	seqs := eval[[]int](alice, `[...document.querySelectorAll(".messages [data-seq]")].map(e => +e.dataset.seq)`)
	want := make([]string, 0, len(page.Messages)+1)
	for s := first; s <= sent+1; s++ {
		want = append(want, fmt.Sprint(s))
	}
	if got := strings.Trim(fmt.Sprint(seqs), "[]"); got != strings.Join(want, " ") {
		t.Errorf("the page shows seqs %s; want %s, each once", got, strings.Join(want, " "))
	}
}
