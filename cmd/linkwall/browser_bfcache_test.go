package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserBackForwardCache: a page the browser keeps in its
// back/forward cache closes its socket, so the server holds no connection
// nobody reads, and when the reader comes back it reconnects and shows
// what was said meanwhile.
func TestBrowserBackForwardCache(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	base := startServer(t, ctx)
	browser := newBrowser(t, ctx)

	alice, carol, room := aliceWithCarol(t, browser, base, "Class 5")
	carol.dial(t)
	defer carol.close()
	carol.send(t, room, "before")
	alice.openRoom(room)
	alice.waitFor("carol's message", `document.querySelectorAll(".messages [data-seq]").length === 1`)
	alice.do(chromedp.Evaluate[chromedp.Void](`window.stayedInCache = true`))

	alice.do(chromedp.Navigate(base + "/healthz"))
	waitConnections(t, base, 1) // Carol's only
	carol.send(t, room, "while away")

	// Not chromedp.NavigateBack: a page restored from the cache fires no load event.
	alice.do(chromedp.Evaluate[chromedp.Void](`history.back()`))
	// chromedp.Poll keeps the JavaScript context of the page it first saw,
	// and a page restored from the cache has another one: poll by hand.
	until := func(what, predicate string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(alice.ctx, time.Second)
			var ok bool
			ok, err = chromedp.Run(ctx, chromedp.Evaluate[bool](predicate))
			cancel()
			if err == nil && ok {
				return
			}
		}
		t.Fatalf("waiting for %s: %v; the page shows:\n%s", what, err,
			eval[string](alice, `(document.querySelector(".messages") || document.body).innerText.slice(-400)`))
	}
	until("the chat page again", `location.pathname === "/" && !!document.querySelector(".messages")`)
	if !eval[bool](alice, `window.stayedInCache === true`) {
		t.Fatal("the page was loaded again, not restored from the back/forward cache")
	}
	until("the page to reconnect", `document.body.dataset.ws === "up" && document.getElementById("banner").hidden`)
	until("the message sent while away", `[...document.querySelectorAll(".messages [data-seq]")].some(e => e.textContent.includes("while away"))`)
	waitConnections(t, base, 2)
}

// waitConnections waits until the server's linkwall_connections gauge is n.
func waitConnections(t *testing.T, base string, n int) {
	t.Helper()
	want := fmt.Sprint(n)
	var got string
	for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = metricAt(t, base, "linkwall_connections"); got == want {
			return
		}
	}
	t.Fatalf("server reports %s connections, want %d", got, n)
}
