package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

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
	var others []*websocket.Conn
	t.Cleanup(func() {
		for _, c := range others {
			_ = c.Close()
		}
	})
	for len(others) < server.MaxConnsPerUser-1 {
		c, err := dialHello(base, token)
		if err != nil {
			t.Fatalf("connection %d: %v", len(others)+2, err)
		}
		others = append(others, c)
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

	_ = others[0].Close()
	others = others[1:]
	second.waitFor("the page to connect once a slot is free", `document.getElementById("banner").hidden && document.body.dataset.ws === "up"`)
	if got := eval[string](alice, `document.body.dataset.ws`); got != "up" {
		t.Fatalf("the first tab's socket is %q, want it untouched", got)
	}
}

// dialHello opens a WebSocket with a bearer token and reads its first
// frame: the connection on a hello, else the error (a *websocket.CloseError
// when the server closed it).
func dialHello(base, token string) (*websocket.Conn, error) {
	h := map[string][]string{"Authorization": {"Bearer " + token}, "Origin": {base}}
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws", h)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, data, err := c.ReadMessage()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	if !strings.HasPrefix(string(data), `{"type":"hello"`) {
		_ = c.Close()
		return nil, errors.New("first frame is not a hello: " + string(data[:min(len(data), 80)]))
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}
