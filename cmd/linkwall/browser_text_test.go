package main

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserLinkPlacementAndCounts: a link is drawn over exactly its own
// characters even after letters whose lower case is longer ("İ"), and the
// traffic panel counts in the singular where there is one.
func TestBrowserLinkPlacementAndCounts(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	base := startServer(t, ctx)
	browser := newBrowser(t, ctx)

	alice := newUser(t, browser, base, "Alice")
	alice.join()
	aliceID := eval[string](alice, `fetch("/api/v1/me").then(r => r.json()).then(j => j.user.id)`)
	carol := newWSUser(t, base, "Carol")
	room := carol.group(t, "İzmir trip", aliceID)
	carol.dial(t)
	defer carol.close()
	carol.send(t, room, "İİİİİİ İstanbul https://m.tb.cn/h.UXpq2Xr and https://item.jd.com/100012043978.html")
	alice.openRoom(room)
	alice.waitFor("the message", `!!document.querySelector('.messages a[data-platform="taobao"]')`)
	if got := eval[string](alice, `document.querySelector('.messages a[data-platform="taobao"]').textContent`); got != "https://m.tb.cn/h.UXpq2Xr" {
		t.Errorf("the Taobao link is drawn over %q, want its address", got)
	}

	alice.do(chromedp.Click(chromedp.CSS(".conv-head .traffic-btn")), chromedp.WaitVisible(chromedp.CSS(".traffic-modal .pv")))
	summary := eval[string](alice, `document.querySelector(".traffic-modal p.muted").textContent`)
	if want := "2 links in 1 message"; !containsWord(summary, want) {
		t.Errorf("traffic panel says %q, want it to say %q", summary, want)
	}
}

// containsWord reports whether s holds want not followed by a letter.
func containsWord(s, want string) bool {
	for i := 0; i+len(want) <= len(s); i++ {
		if s[i:i+len(want)] == want {
			rest := s[i+len(want):]
			return rest == "" || !(rest[0] >= 'a' && rest[0] <= 'z')
		}
	}
	return false
}
