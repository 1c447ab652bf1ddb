package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/linkwall/linkwall/internal/server"
)

// TestBrowserTooManyConnections: a person whose other tabs and devices
// hold every connection the server allows sees why the page waits, and
// the page connects by itself once one of them closes.
func TestBrowserTooManyConnections(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	base := startServer(t, ctx)
	browser := newBrowser(t, ctx)

	alice := newUser(t, browser, base, "Alice")
	alice.join()
	token := eval[string](alice, `sessionStorage.getItem("linkwall.token") || ""`)
	if token == "" {
		t.Fatal("the page keeps no session token for its tab")
	}
	// Alice's other devices take every slot but the page's.
	others := make([]*wsUser, server.MaxConnsPerUser-1)
	for i := range others {
		others[i] = &wsUser{base: base, token: token}
		others[i].dial(t)
		defer others[i].close()
		select {
		case f := <-others[i].frames:
			if f["type"] != "hello" {
				t.Fatalf("connection %d: first frame %v, want the hello", i+2, f)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("connection %d: no hello", i+2)
		}
	}

	// A second tab, signed in as Alice by the cookie, finds no slot.
	tab, cancelTab := chromedp.NewContext(alice.ctx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("open a second tab: %v", err)
	}
	second := &user{t: t, name: "Alice's second tab", ctx: tab, browser: browser, base: base}
	second.do(chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(".sidebar")))
	second.waitFor("the too-many-connections banner", `!document.getElementById("banner").hidden && document.body.dataset.ws === "down" && document.getElementById("banner").dataset.key === "tooManyConnections"`)
	if got := eval[string](second, `document.getElementById("banner").textContent`); !strings.Contains(got, "too many tabs or devices") {
		t.Fatalf("banner says %q, want the reason", got)
	}

	others[0].close()
	second.waitFor("the page to connect once a slot is free", `document.getElementById("banner").hidden && document.body.dataset.ws === "up"`)
	if got := eval[string](alice, `document.body.dataset.ws`); got != "up" {
		t.Fatalf("the first tab's socket is %q, want it untouched", got)
	}
}
