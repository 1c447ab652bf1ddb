package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestBrowserKeepsFocus is a keyboard user's session while others talk and
// change the era: redrawing the chat list, the header or the messages must
// not throw the focus back to the top of the page, dialogs start inside
// their body, and clearing the Preview's text is not an error.
func TestBrowserKeepsFocus(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	base := startServer(t, ctx)
	browser := newBrowser(t, ctx)

	alice, carol, room := aliceWithCarol(t, browser, base, "Class 3")
	other := carol.group(t, "Class 4", alice.userID())
	carol.dial(t)
	defer carol.close()
	carol.send(t, room, linksText)
	carol.send(t, other, "hi")
	alice.openRoom(room)

	focused := func() string {
		return eval[string](alice, `(() => { const a = document.activeElement;
			return a === document.body ? "body" : a.className + (a.dataset.room ? " " + a.dataset.room : ""); })()`)
	}
	// Focus in the chat list survives a message that redraws it.
	alice.focus(fmt.Sprintf(`.room-item[data-room=%q]`, other))
	carol.send(t, other, "another")
	alice.waitFor("the new message in the list", fmt.Sprintf(`document.querySelector('.room-item[data-room=%q] .room-last').textContent.endsWith("another")`, other))
	if got := focused(); got != "room-item "+other {
		t.Errorf("after a message redrew the chat list, focus is on %q, want the room it was on", got)
	}

	// Enter on a bare hyperlink opens the log-in dialog, which stays open:
	// the key must not also follow the link and press the dialog's button.
	alice.focus(`.messages a[data-platform="taobao"]`)
	alice.do(chromedp.KeyEvent(kb.Enter))
	alice.waitFor("the log-in dialog", `!!document.querySelector(".interstitial-login")`)
	time.Sleep(300 * time.Millisecond)
	if !eval[bool](alice, `!!document.querySelector(".interstitial-login")`) {
		t.Error("the log-in dialog that Enter opened closed by itself")
	}
	alice.do(chromedp.KeyEvent(kb.Escape))
	alice.waitFor("the log-in dialog to close", `!document.querySelector(".modal")`)

	// The era dialog by keyboard: focus starts on an era, and comes back to
	// the era button, which the new era redrew.
	alice.focus(".conv-head .era-btn")
	alice.do(chromedp.KeyEvent(kb.Enter))
	alice.waitFor("the era dialog", `!!document.querySelector(".timeline")`)
	if got := focused(); got != "tl-btn" {
		t.Errorf("the era dialog opened with focus on %q, want the first era in its body", got)
	}
	alice.focus(`.tl-btn[data-era="walled"]`)
	alice.do(chromedp.KeyEvent(kb.Enter))
	alice.waitFor("the walled era", `!document.querySelector(".modal") && document.querySelector(".conv-head .era-btn").dataset.era === "walled"`)
	time.Sleep(300 * time.Millisecond) // the room frame and the reload may redraw again
	if got := focused(); got != "btn era-btn" {
		t.Errorf("after picking an era, focus is on %q, want the era button", got)
	}

	// LinkBot's language button redraws the header.
	alice.focus(".conv-head .room-lang-btn")
	alice.do(chromedp.KeyEvent(kb.Enter))
	alice.waitFor("LinkBot answering in Chinese", `document.querySelector(".conv-sub").textContent.includes("Chinese")`)
	if got := focused(); got != "room-lang-btn" {
		t.Errorf("after switching LinkBot's language, focus is on %q, want its button", got)
	}

	// The page's language redraws the whole page.
	alice.focus(".side-head .lang-btn")
	alice.do(chromedp.KeyEvent(kb.Enter))
	alice.waitFor("the Chinese page", `document.documentElement.lang === "zh-CN"`)
	if got := focused(); got != "btn lang-btn" {
		t.Errorf("after switching the page's language, focus is on %q, want the language button", got)
	}
	alice.do(chromedp.KeyEvent(kb.Enter))
	alice.waitFor("the English page", `document.documentElement.lang === "en"`)

	// Someone else changes the era: the messages are redrawn, and focus
	// stays in the message it was in.
	alice.focus(`.messages [data-platform="douyin"][role=button]`)
	carol.send(t, room, "/era open-api")
	alice.waitOutcomes(1, map[string]string{"douyin": "card"})
	if got := eval[string](alice, `(document.activeElement.closest(".msg") || {dataset: {}}).dataset.seq || document.activeElement.className`); got != "1" {
		t.Errorf("after another person's era change, focus is on %q, want in message 1", got)
	}

	// Clearing the Preview's text to paste another is not an error.
	alice.do(chromedp.Click(chromedp.CSS(".side-actions .preview-btn")))
	alice.waitFor("the preview grid", `document.querySelectorAll(".preview-cell .pv-chip").length > 0`)
	alice.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("preview-text").select()`), chromedp.KeyEvent(kb.Delete))
	time.Sleep(600 * time.Millisecond)
	if got := eval[string](alice, `document.querySelector(".preview-modal .form-error") ? document.querySelector(".preview-modal .form-error").textContent : ""`); got != "" {
		t.Errorf("clearing the preview's text shows the error %q", got)
	}
	alice.do(chromedp.KeyEvent(kb.Escape))

	// A half-typed message waits in its room across a room switch and a
	// change of the page's language, and is gone once sent.
	draft := func() string { return eval[string](alice, `document.querySelector(".composer-input").value`) }
	alice.do(chromedp.SendKeys(chromedp.CSS(".composer-input"), "half a thought"))
	alice.openRoom(other)
	if got := draft(); got != "" {
		t.Errorf("the other room's composer shows %q, want it empty", got)
	}
	alice.openRoom(room)
	if got := draft(); got != "half a thought" {
		t.Errorf("back in the room, the composer shows %q, want the draft", got)
	}
	alice.do(chromedp.Click(chromedp.CSS(".side-head .lang-btn")))
	alice.waitFor("the Chinese page", `document.documentElement.lang === "zh-CN"`)
	if got := draft(); got != "half a thought" {
		t.Errorf("after switching the page's language, the composer shows %q, want the draft", got)
	}
	alice.do(chromedp.SendKeys(chromedp.CSS(".composer-input"), kb.Enter))
	alice.waitFor("the draft sent", `!document.querySelector(".messages .msg.pending") && [...document.querySelectorAll(".messages .msg-own")].some(e => e.textContent.includes("half a thought"))`)
	alice.openRoom(other)
	alice.openRoom(room)
	if got := draft(); got != "" {
		t.Errorf("after sending, the composer shows %q, want it empty", got)
	}
}

// TestBrowserServerErrorsInChinese: the server explains its errors in
// English; a Chinese page names them in Chinese by their code.
func TestBrowserServerErrorsInChinese(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	base := startServer(t, ctx)
	browser := newBrowser(t, ctx)

	alice, _, room := aliceWithCarol(t, browser, base, "Class 3")
	alice.openRoom(room)
	alice.do(chromedp.Click(chromedp.CSS(".side-head .lang-btn")))
	alice.waitFor("the Chinese page", `document.documentElement.lang === "zh-CN"`)

	// More sends at once than the per-user burst allows.
	alice.do(chromedp.Evaluate[chromedp.Void](`for (let i = 0; i < 80; i++) {
		document.querySelector(".composer-input").value = "m" + i;
		document.querySelector(".composer").requestSubmit();
	}`))
	alice.waitFor("the rate-limit toast", `(document.getElementById("toast") || {}).textContent?.includes("发送太频繁")`)
}

// focus moves the keyboard focus to the element css selects in one step
// inside the page: chromedp.Focus looks the node up first, and a redraw in
// between loses it.
func (u *user) focus(css string) {
	u.t.Helper()
	u.waitFor("focus on "+css, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.focus(); return document.activeElement === e; })()`, css))
}
