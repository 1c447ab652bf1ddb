package main

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestBrowserLinkPlacementAndCounts: a link is drawn over exactly its own
// characters even after letters whose lower case is longer ("İ"), and the
// traffic panel counts in the singular where there is one, an open "Why?"
// panel survives a language switch, the composer counts characters as the
// server does and keeps a text over the limit whole, unsent, and every copy of an address shows the outcome the bot
// decided for it, and a link to an unknown chat leaves none on screen.
func TestBrowserLinkPlacementAndCounts(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	base := startServer(t, ctx)
	browser := newBrowser(t, ctx)

	alice, carol, room := aliceWithCarol(t, browser, base, "İzmir trip")
	carol.dial(t)
	defer carol.close()
	carol.send(t, room, "İİİİİİ İstanbul https://m.tb.cn/h.UXpq2Xr and https://item.jd.com/100012043978.html")
	alice.openRoom(room)
	alice.waitFor("the message", `!!document.querySelector('.messages a[data-platform="taobao"]')`)
	if got := eval[string](alice, `document.querySelector('.messages a[data-platform="taobao"]').textContent`); got != "https://m.tb.cn/h.UXpq2Xr" {
		t.Errorf("the Taobao link is drawn over %q, want its address", got)
	}

	// An open "Why?" panel stays open when the page changes language.
	alice.do(chromedp.Click(chromedp.CSS(`.messages [data-seq="1"] .why[data-why-for="https://m.tb.cn/h.UXpq2Xr"]`)))
	alice.waitFor("the Why panel", `!!document.querySelector('.messages .why[aria-expanded="true"]')`)
	alice.do(chromedp.Click(chromedp.CSS(".side-head .lang-btn")))
	alice.waitFor("the Chinese page", `document.documentElement.lang === "zh-CN"`)
	open := eval[[]string](alice, `[...document.querySelectorAll('.messages .why[aria-expanded="true"]')].map(b => b.dataset.whyFor + (document.getElementById(b.getAttribute("aria-controls")).hidden ? " hidden" : " shown"))`)
	if strings.Join(open, "|") != "https://m.tb.cn/h.UXpq2Xr shown" {
		t.Errorf("after switching the language the open Why panels are %q, want the Taobao link's, shown", open)
	}
	alice.do(chromedp.Click(chromedp.CSS(".side-head .lang-btn")))
	alice.waitFor("the English page", `document.documentElement.lang === "en"`)

	alice.do(chromedp.Click(chromedp.CSS(".conv-head .traffic-btn")), chromedp.WaitVisible(chromedp.CSS(".traffic-modal .pv")))
	summary := eval[string](alice, `document.querySelector(".traffic-modal p.muted").textContent`)
	if want := "2 links in 1 message"; !containsWord(summary, want) {
		t.Errorf("traffic panel says %q, want it to say %q", summary, want)
	}
	alice.do(chromedp.KeyEvent(kb.Escape))
	alice.waitFor("the traffic panel to close", `!document.querySelector(".modal")`)

	// The composer counts characters as the server does (an emoji is one)
	// and never cuts a paste short: a text over 4,000 keeps its end (here a
	// link), says by how much it is over, and is not sent until shortened.
	over := eval[[]string](alice, `(() => { const el = document.querySelector(".composer-input");
		el.focus();
		el.value = "😀".repeat(40) + "x".repeat(3950) + " https://m.tb.cn/h.UXpq2Xr"; el.dispatchEvent(new Event("input"));
		const msgs = document.querySelectorAll(".messages .msg").length;
		document.querySelector(".send-btn").click();
		const counter = document.querySelector(".composer .char-count");
		const out = [String([...el.value].length), el.getAttribute("aria-invalid"), counter ? counter.textContent : "",
			String(document.querySelectorAll(".messages .msg").length - msgs)];
		el.value = "😀".repeat(40) + "x".repeat(3960); el.dispatchEvent(new Event("input"));
		out.push(el.getAttribute("aria-invalid"), String(!!document.querySelector(".composer .char-count")));
		el.value = ""; el.dispatchEvent(new Event("input"));
		return out; })()`)
	if want := []string{"4016", "true", "Too long: 4,016 of 4,000 characters. Shorten it to send it.", "0", "false", "false"}; strings.Join(over, "|") != strings.Join(want, "|") {
		t.Errorf("a 4,016-character text in the composer: kept, invalid, counter, messages added, then at 4,000 invalid and counter shown = %q; want %q", over, want)
	}

	// The bot decides an address once; every copy of it in the text shows
	// that outcome, and a longer address that begins with it keeps its own.
	twice := "看 https://v.douyin.com/iRNBho6/ 再看 https://v.douyin.com/iRNBho6/, 还有 https://v.douyin.com/iRNBho6/more"
	carol.send(t, room, twice)
	alice.waitFor("the second message", `document.querySelectorAll(".messages .msg:not(.msg-system) .msg-text").length >= 2`)
	got := eval[[]string](alice, `[...document.querySelectorAll('.messages [data-seq] [data-platform="douyin"]')].map(e => e.dataset.outcome + " " + e.textContent)`)
	want := []string{"blocked https://v.douyin.com/iRNBho6/", "blocked https://v.douyin.com/iRNBho6/", "blocked https://v.douyin.com/iRNBho6/more"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the Douyin addresses show as %q, want %q", got, want)
	}

	// A link to a chat that does not exist closes the open one and clears
	// the address, so that it never names one room while showing another.
	alice.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/rooms/00000000-0000-4000-8000-000000000001"`))
	alice.waitFor("the unknown room's link handled", `location.hash === "" && !!document.querySelector(".conv-empty")`)
	if got := eval[string](alice, `document.getElementById("toast").textContent`); got != "That chat does not exist, or you are not in it." {
		t.Errorf("after a link to an unknown chat the toast says %q", got)
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
