package main

// Browser tests: the real server on 127.0.0.1:0 and Debian's Chromium driven
// by chromedp, two users in two browser contexts (separate cookie jars).
//
//	go test ./cmd/linkwall -run Browser              # the tests
//	go test ./cmd/linkwall -run Browser -screenshots # also writes docs/screenshots/*.png
//	LINKWALL_SCREENSHOTS=1 go test ./...             # the same, without a flag
//
// They skip when /usr/bin/chromium is missing, and fail instead when
// LINKWALL_REQUIRE_INTEGRATION=1 (CI).

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/gorilla/websocket"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

// screenshots also writes docs/screenshots/*.png; LINKWALL_SCREENSHOTS=1
// does the same where a flag cannot be passed (go test ./...).
var screenshots = flag.Bool("screenshots", os.Getenv("LINKWALL_SCREENSHOTS") == "1", "write screenshots of the page to docs/screenshots")

const (
	chromiumPath   = "/usr/bin/chromium"
	browserTimeout = 50 * time.Second // the whole browser test; CI budget is one minute
	waitTimeout    = 8 * time.Second  // one expected change on the page
)

// The links every era test posts: a Taobao share text, a Douyin link, a JD item.
const (
	taobaoLink = "https://m.tb.cn/h.UXpq2Xr"
	douyinLink = "https://v.douyin.com/iRNBho6/"
	jdLink     = "https://item.jd.com/100012043978.html"
	linksText  = "【淘宝】" + taobaoLink + " 看看这个，抖音 " + douyinLink + " 京东 " + jdLink
	xssText    = `<img src=x onerror=alert(1)>`
)

func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("LINKWALL_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("LINKWALL_REQUIRE_INTEGRATION=1 but Chromium is missing at %s: %v", chromiumPath, err)
		}
		t.Skipf("skipping browser test: Chromium not found at %s (apt-get install -y chromium)", chromiumPath)
	}
}

// newBrowser starts one headless Chromium with a fresh profile and returns
// its root context; users get their own browser contexts from it.
func newBrowser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-features", "Translate"),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.Flag("lang", "en-US"), // the tests read English UI strings unless they switch
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	return bctx
}

// user is one person in their own browser context (own cookies and storage).
type user struct {
	t       *testing.T
	name    string
	ctx     context.Context
	browser context.Context
	base    string
}

func newUser(t *testing.T, browser context.Context, base, name string) *user {
	t.Helper()
	u := &user{t: t, name: name, browser: browser, base: base}
	// An alert() from injected markup would block the page: fail loudly instead.
	onEvent := func(ev any) {
		switch ev := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			t.Errorf("%s: a JavaScript dialog opened (%q): markup from a message ran", name, ev.Message)
			// Best effort: dismissing it only lets the rest of the test run.
			go chromedp.Call(u.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			t.Logf("%s: console.%s: %s", name, ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			// A script error on the page is a bug even if the test goes on.
			t.Errorf("%s: uncaught exception in the page: %s", name, describeException(ev.ExceptionDetails))
		}
	}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext(), chromedp.WithListener(onEvent))
	t.Cleanup(cancel)
	u.ctx = ctx
	// The first run creates the tab, which lives as long as that run's
	// context: it must be ctx itself, not a child with a timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	return u
}

// do runs actions, failing the test with the user's name on error.
func (u *user) do(actions ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		u.t.Fatalf("%s: %v", u.name, err)
	}
}

// eval evaluates a JavaScript expression in the user's page.
func eval[T any](u *user, expr string) T {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		u.t.Fatalf("%s: eval %s: %v", u.name, firstLine(expr), err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it holds.
func (u *user) waitFor(what, predicate string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, waitTimeout+2*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		state := eval[string](u, `document.querySelector(".messages") ? document.querySelector(".messages").innerText.slice(-600) : document.body.innerText.slice(0, 600)`)
		u.t.Fatalf("%s: waiting for %s: %v\npage shows:\n%s", u.name, what, err, state)
	}
}

func describeException(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	msg := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		msg = d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d:%d)", msg, d.URL, d.LineNumber+1, d.ColumnNumber+1)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func (u *user) join() {
	u.t.Helper()
	u.do(
		chromedp.Navigate(u.base+"/"),
		chromedp.WaitVisible(chromedp.ID("join-name")),
		chromedp.SetValue(chromedp.ID("join-name"), u.name),
		chromedp.Click(chromedp.CSS(".join-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(".sidebar")),
	)
	u.waitFor("the socket's hello", `document.body.dataset.ws === "up"`)
}

// userID is the id of the person signed in on the page.
func (u *user) userID() string {
	u.t.Helper()
	return eval[string](u, `fetch("/api/v1/me").then(r => r.json()).then(j => j.user.id)`)
}

// aliceWithCarol is the usual cast of a browser test: Alice joined in a
// tab at base, and Carol over the API with a new group of the two named
// group. Carol is not connected yet.
func aliceWithCarol(t *testing.T, browser context.Context, base, group string) (alice *user, carol *wsUser, room string) {
	t.Helper()
	alice = newUser(t, browser, base, "Alice")
	alice.join()
	carol = newWSUser(t, base, "Carol")
	return alice, carol, carol.group(t, group, alice.userID())
}

// openRoom opens a room by deep link and waits for its history.
func (u *user) openRoom(id string) {
	u.t.Helper()
	u.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = "#/rooms/%s"`, id)))
	u.waitFor("room "+id, fmt.Sprintf(`(document.querySelector(".messages") || {}).dataset?.room === %q && document.querySelector(".messages").dataset.loaded === "true"`, id))
}

// roomID is the open room, from the deep link.
func (u *user) roomID() string {
	return strings.TrimPrefix(eval[string](u, `location.hash`), "#/rooms/")
}

// send types text and presses Enter, then waits for the acknowledgement.
func (u *user) send(text string) int {
	u.t.Helper()
	before := eval[int](u, `Math.max(0, ...[...document.querySelectorAll(".messages .msg-own[data-seq]")].map(e => +e.dataset.seq))`)
	u.do(
		chromedp.SetValue(chromedp.CSS(".composer-input"), text),
		chromedp.SendKeys(chromedp.CSS(".composer-input"), kb.Enter),
	)
	u.waitFor("the acknowledgement of "+text, fmt.Sprintf(`!document.querySelector(".messages .msg.pending") && [...document.querySelectorAll(".messages .msg-own[data-seq]")].some(e => +e.dataset.seq > %d)`, before))
	return eval[int](u, `Math.max(...[...document.querySelectorAll(".messages .msg-own[data-seq]")].map(e => +e.dataset.seq))`)
}

// outcomes returns platform → data-outcome of the links in message seq.
func (u *user) outcomes(seq int) map[string]string {
	return eval[map[string]string](u, fmt.Sprintf(`Object.fromEntries([...document.querySelectorAll('.messages [data-seq="%d"] [data-outcome]')].map(e => [e.dataset.platform, e.dataset.outcome]))`, seq))
}

// waitOutcomes waits until every platform in want shows its outcome in message seq.
func (u *user) waitOutcomes(seq int, want map[string]string) {
	u.t.Helper()
	var conds []string
	for pf, o := range want {
		conds = append(conds, fmt.Sprintf(`m.querySelector('[data-platform=%q]') && m.querySelector('[data-platform=%q]').dataset.outcome === %q`, pf, pf, o))
	}
	pred := fmt.Sprintf(`(() => { const m = document.querySelector('.messages [data-seq="%d"]'); return !!m && %s; })()`, seq, strings.Join(conds, " && "))
	ctx, cancel := context.WithTimeout(u.ctx, waitTimeout+2*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](pred, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout))); err != nil {
		u.t.Fatalf("%s: message %d: outcomes %v, want %v (%v)", u.name, seq, u.outcomes(seq), want, err)
	}
}

// setEra picks an era on the timeline, as a person would.
func (u *user) setEra(era string) {
	u.t.Helper()
	u.do(
		chromedp.Click(chromedp.CSS(".conv-head .era-btn")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`.timeline .tl-btn[data-era=%q]`, era))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`.timeline .tl-btn[data-era=%q]`, era))),
	)
	u.waitFor("era "+era, fmt.Sprintf(`!document.querySelector(".modal") && document.querySelector(".era-bar").dataset.era === %q`, era))
}

func (u *user) shot(name string) {
	u.t.Helper()
	if !*screenshots {
		return
	}
	// A focus ring left by the test's own key presses is not part of the view;
	// the composer keeps its focus style. Let layout and fonts settle.
	u.do(chromedp.Evaluate[chromedp.Void](`document.activeElement && !document.activeElement.matches("textarea, input") && document.activeElement.blur()`))
	time.Sleep(250 * time.Millisecond)
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		u.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		u.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		u.t.Fatal(err)
	}
}

func TestBrowser(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	base := startServer(t, ctx)

	// The server sends a CSP that forbids inline scripts on the page itself.
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy = %q, want script-src 'self' without unsafe-inline", csp)
	}

	browser := newBrowser(t, ctx)
	bob := newUser(t, browser, base, "Bob")
	bob.join()
	alice := newUser(t, browser, base, "Alice")
	alice.join()

	bobID := bob.userID()
	var groupRoom string // the group of Alice and Bob, made by the "group" subtest

	t.Run("direct", func(t *testing.T) {
		alice.t, bob.t = t, t
		newWSUser(t, alice.base, "Carol") // someone else in the picker
		alice.do(
			chromedp.Click(chromedp.CSS(".side-actions .new-chat")),
			chromedp.WaitVisible(chromedp.CSS(".pick-list .pick")),
		)
		// Newest first, each with when they joined; typing filters by name.
		if got := eval[[]string](alice, `[...document.querySelectorAll(".pick-list li")].map((li) => li.dataset.name + "|" + li.querySelector(".pick-joined").textContent.startsWith("joined "))`); !slices.Equal(got, []string{"Carol|true", "Bob|true"}) {
			t.Errorf("picker rows %q, want Carol then Bob, each with a joined time", got)
		}
		alice.do(chromedp.SendKeys(chromedp.CSS(".pick-filter"), "BO"))
		alice.waitFor("the filtered picker", `[...document.querySelectorAll(".pick-list li:not([hidden])")].map((li) => li.dataset.name).join() === "Bob"`)
		alice.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`.pick[data-user=%q]`, bobID))))
		alice.waitFor("the direct room", `location.hash.startsWith("#/rooms/") && !!document.querySelector(".composer-input")`)
		room := alice.roomID()
		hello := alice.send("hi Bob")

		bob.waitFor("the new room in the list", fmt.Sprintf(`!!document.querySelector('.room-item[data-room=%q]')`, room))
		bob.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`.room-item[data-room=%q]`, room))))
		bob.waitFor("alice's message", fmt.Sprintf(`(document.querySelector('.messages [data-seq="%d"]') || {}).textContent?.includes("hi Bob")`, hello))
		if got := eval[string](bob, `document.querySelector(".conv-name").textContent`); got != "Alice" {
			t.Errorf("bob's direct room is titled %q, want the other member's name Alice", got)
		}
		// Messages that arrive while the room is open are read to screen readers.
		hi := alice.send("are you there?")
		bob.waitFor("the new message", fmt.Sprintf(`!!document.querySelector('.messages [data-seq="%d"]')`, hi))
		bob.waitFor("the aria-live announcement", `document.getElementById("live").textContent.includes("are you there?") && document.getElementById("live").getAttribute("aria-live") === "polite"`)

		// Links in a one-to-one chat: bare hyperlinks for rivals, a card for JD.
		seq := bob.send(linksText)
		want := map[string]string{"taobao": "hyperlink", "douyin": "hyperlink", "jd": "card"}
		bob.waitOutcomes(seq, want)
		alice.waitOutcomes(seq, want)
		// The JD card shows the catalogue's picture, served by linkwall itself.
		alice.waitFor("the JD card's picture", fmt.Sprintf(`(document.querySelector('.messages [data-seq="%d"] .card-img.has-img') || {style: {}}).style.backgroundImage.includes("/cards/moutai.svg")`, seq))
		alice.shot("desktop-en-direct")
		// The first Tab stop (the first focusable element) skips to the message box.
		if got := eval[string](alice, `document.querySelector("#app a[href], #app button, #app input, #app textarea, #app select, #app [tabindex]").className`); got != "skip-link" {
			t.Errorf("first Tab stop is %q, want the skip link", got)
		}
		alice.do(chromedp.Evaluate[chromedp.Void](`document.querySelector(".skip-link").focus()`), chromedp.KeyEvent(kb.Enter))
		alice.waitFor("the message box focused", `document.activeElement === document.querySelector(".composer-input")`)
		// Small text is readable off a projector: WCAG AA, 4.5:1 against the
		// background it is drawn on (ancestors' backgrounds composited).
		if low := eval[[]string](alice, contrastJS+`([".time-sep time", ".send-btn", ".card-foot", ".conv-sub", ".room-time", ".room-last", ".why", ".why-chip", ".era-date", ".card-price", ".msg-other .avatar"])`); len(low) > 0 {
			t.Errorf("text below 4.5:1 contrast or missing: %v", low)
		}

		// A hyperlink to a rival opens the log-in interstitial, with a safe "Open anyway".
		alice.do(
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`.messages [data-seq="%d"] a[data-platform="taobao"]`, seq))),
			chromedp.WaitVisible(chromedp.CSS(".interstitial-login")),
		)
		rel := eval[string](alice, `document.querySelector(".interstitial-login a[target=_blank]").rel`)
		if rel != "noopener noreferrer" {
			t.Errorf("Open anyway rel = %q", rel)
		}
		alice.shot("desktop-en-login-interstitial")
		alice.do(chromedp.SendKeys(chromedp.CSS(".interstitial-login .btn"), kb.Escape))
		alice.waitFor("Escape to close the dialog", `!document.querySelector(".modal")`)
		// Focus goes back to the link that opened the dialog.
		if got := eval[string](alice, `document.activeElement.dataset.platform || document.activeElement.className`); got != "taobao" {
			t.Errorf("after Escape, focus is on %q, want the Taobao link", got)
		}

		// Walled era in the same room: every rival link is blocked.
		alice.setEra("walled")
		blocked := map[string]string{"taobao": "blocked", "douyin": "blocked", "jd": "card"}
		alice.waitOutcomes(seq, blocked)
		bob.waitOutcomes(seq, blocked)
		bob.waitFor("the era label", `document.querySelector(".era-bar").dataset.era === "walled"`)

		// Blocked: the WeChat interstitial with the address to copy.
		alice.do(
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`.messages [data-seq="%d"] [data-platform="douyin"]`, seq))),
			chromedp.WaitVisible(chromedp.CSS(".interstitial-blocked input.addr")),
		)
		if got := eval[string](alice, `document.querySelector(".interstitial-blocked input.addr").value`); got != douyinLink {
			t.Errorf("blocked interstitial address = %q, want %q", got, douyinLink)
		}
		alice.shot("desktop-en-blocked-interstitial")
		alice.do(chromedp.KeyEvent(kb.Escape))
		alice.waitFor("Escape to close the dialog", `!document.querySelector(".modal")`)

		// XSS: markup in a message is shown as text and never becomes an element.
		x := bob.send(xssText)
		alice.waitFor("the markup message", fmt.Sprintf(`!!document.querySelector('.messages [data-seq="%d"]')`, x))
		got := eval[string](alice, fmt.Sprintf(`document.querySelector('.messages [data-seq="%d"] .msg-text').textContent`, x))
		if got != xssText {
			t.Errorf("markup message shows %q, want the text %q", got, xssText)
		}
		// The page itself never uses <img> (card pictures are backgrounds), so any is injected.
		if n := eval[int](alice, `document.querySelectorAll("img, [onerror]").length`); n != 0 {
			t.Errorf("%d img elements were created from message text", n)
		}
		alice.setEra("group-ecommerce")
	})

	t.Run("group", func(t *testing.T) {
		alice.t, bob.t = t, t
		hash := eval[string](alice, `location.hash`)
		alice.do(
			chromedp.Click(chromedp.CSS(".side-actions .new-group")),
			chromedp.WaitVisible(chromedp.ID("group-name")),
			chromedp.SetValue(chromedp.ID("group-name"), "Class 3"),
			// Enter in the search box filters; it does not create the group.
			chromedp.SendKeys(chromedp.CSS(".group-form .pick-filter"), "bo\r"),
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`input[name=member][value=%q]`, bobID))),
		)
		if got := eval[[]string](alice, `[document.querySelector(".group-form legend").textContent, String(document.querySelectorAll(".group-form .check-list li:not([hidden])").length), location.hash]`); got[0] != "Members (1 chosen)" || got[1] != "1" || got[2] != hash {
			t.Errorf("new group dialog after Enter in the search box and one pick: %q; want the count, Bob alone in view, no group made", got)
		}
		alice.do(chromedp.Click(chromedp.CSS(".group-form button[type=submit]")))
		alice.waitFor("the group", `location.hash.startsWith("#/rooms/") && document.querySelector(".conv-name").textContent === "Class 3"`)
		room := alice.roomID()
		groupRoom = room
		seq := alice.send(linksText)
		alice.send("看看")

		bob.openRoom(room)
		steps := []struct {
			era  string
			want map[string]string
		}{
			{"group-ecommerce", map[string]string{"taobao": "hyperlink", "douyin": "blocked", "jd": "card"}},
			{"walled", map[string]string{"taobao": "blocked", "douyin": "blocked", "jd": "card"}},
			{"open-api", map[string]string{"taobao": "card", "douyin": "card", "jd": "card"}},
			{"direct-open", map[string]string{"taobao": "blocked", "douyin": "blocked", "jd": "card"}},
			{"group-ecommerce", map[string]string{"taobao": "hyperlink", "douyin": "blocked", "jd": "card"}},
		}
		for i, s := range steps {
			if i > 0 {
				// Alternate who turns the timeline: everyone sees the change.
				[]*user{bob, alice}[i%2].setEra(s.era)
			}
			alice.waitOutcomes(seq, s.want)
			bob.waitOutcomes(seq, s.want)
			// LinkBot's grey notice under the links shows only while one is blocked.
			notices := `document.querySelectorAll(".messages .msg-system").length === `
			if s.want["douyin"] == "blocked" {
				bob.waitFor("LinkBot's notice", notices+"1")
			} else {
				bob.waitFor("no notice once nothing is blocked", notices+"0")
			}
			if s.era == "walled" {
				bob.shot("desktop-en-group-walled")
			}
		}

		// "Why?" shows the rule the server applied.
		rule := eval[string](alice, fmt.Sprintf(`fetch("/api/v1/rooms/%s/messages?after=%d&limit=1").then(r => r.json()).then(j => j.messages[0].links.find(l => l.platform === "douyin").rule)`, room, seq-1))
		alice.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`.messages [data-seq="%d"] .why-row .why[data-why-for=%q]`, seq, douyinLink))))
		alice.waitFor("the Why? panel", fmt.Sprintf(`[...document.querySelectorAll('.messages [data-seq="%d"] .why-panel')].some(p => !p.hidden && p.querySelector(".why-rule").textContent === %q && p.querySelector(".why-reason").textContent.length > 0)`, seq, rule))
		alice.shot("desktop-en-group-why")
		if low := eval[[]string](alice, contrastJS+`([".msg-own .lk-blocked", ".msg-own .lk-hyperlink", ".blocked-note", ".why-panel:not([hidden]) .o-blocked"])`); len(low) > 0 {
			t.Errorf("blocked links and the Why? panel: text below 4.5:1 contrast or missing: %v", low)
		}

		// The traffic panel counts this room's links under its era.
		alice.do(chromedp.Click(chromedp.CSS(".conv-head .traffic-btn")), chromedp.WaitVisible(chromedp.CSS(".traffic-modal .pv")))
		if got := eval[string](alice, `document.querySelector(".traffic-modal tr[data-platform=douyin] td.n-blocked").textContent`); got != "1" {
			t.Errorf("traffic panel: douyin blocked = %q, want 1", got)
		}
		if low := eval[[]string](alice, contrastJS+`([".traffic-modal td.n-blocked", ".traffic-modal td.n-card", ".traffic-modal .muted", ".traffic-modal td.zero"])`); len(low) > 0 {
			t.Errorf("traffic panel: text below 4.5:1 contrast or missing: %v", low)
		}
		if got := eval[string](alice, `document.querySelector(".traffic-modal .pv").textContent`); got != "12,500,000" {
			t.Errorf("traffic arithmetic = %q, want 12,500,000", got)
		}
		// Both inputs are live: 1.25 billion × 2.5 % = 31,250,000.
		alice.do(
			chromedp.Focus(chromedp.ID("share")),
			chromedp.Evaluate[chromedp.Void](`document.getElementById("share").select()`),
			chromedp.SendKeys(chromedp.ID("share"), "2.5"),
		)
		alice.waitFor("the new page views", `document.querySelector(".traffic-modal .pv").textContent === "31,250,000"`)
		alice.do(chromedp.KeyEvent(kb.Escape))

	})

	t.Run("preview", func(t *testing.T) {
		alice.t, bob.t = t, t
		// A product team pastes its link and sees every era and chat kind at
		// once, without posting it anywhere.
		rooms := eval[int](alice, `document.querySelectorAll(".room-item").length`)
		alice.do(chromedp.Click(chromedp.CSS(".side-actions .preview-btn")), chromedp.WaitVisible(chromedp.CSS(".preview-modal #preview-text")))
		cell := func(era, kind, platform string) string {
			return fmt.Sprintf(`(document.querySelector('.preview-cell[data-era=%q][data-kind=%q] .pv-chip[data-platform=%q]') || {className: ""}).className`, era, kind, platform)
		}
		alice.waitFor("the preview grid", cell("open-api", "group", "douyin")+` !== ""`)
		for _, c := range []struct{ era, kind, platform, want string }{
			{"walled", "direct", "taobao", "blocked"},
			{"direct-open", "direct", "taobao", "hyperlink"},
			{"direct-open", "group", "douyin", "blocked"},
			{"group-ecommerce", "group", "taobao", "hyperlink"},
			{"open-api", "group", "douyin", "card"},
			{"walled", "group", "jd", "card"},
		} {
			if got := eval[string](alice, cell(c.era, c.kind, c.platform)); got != "pv-chip n-"+c.want {
				t.Errorf("preview %s/%s %s: %q, want %s", c.era, c.kind, c.platform, got, c.want)
			}
		}
		// A new text is previewed as it is typed; a cell shows the message.
		alice.do(
			chromedp.Evaluate[chromedp.Void](`document.getElementById("preview-text").value = ""`),
			chromedp.SendKeys(chromedp.ID("preview-text"), "抖音 https://v.douyin.com/iRNBho6/"),
		)
		alice.waitFor("the new text's grid", `document.querySelectorAll('.preview-cell[data-era="walled"][data-kind="group"] .pv-chip').length === 1`)
		alice.do(chromedp.Click(chromedp.CSS(`.preview-cell[data-era="open-api"][data-kind="direct"]`)))
		alice.waitFor("the open-api message", `!!document.querySelector('.preview-msg .msg .card-wrap') && document.querySelector('.preview-cell[data-era="open-api"][data-kind="direct"]').getAttribute("aria-pressed") === "true"`)
		alice.shot("desktop-en-preview")
		// Under the hypothetical era the open-api rule never held; a rule
		// that holds in every era (JD's card) has always held.
		alice.do(
			chromedp.Evaluate[chromedp.Void](`document.getElementById("preview-text").value = ""`),
			chromedp.SendKeys(chromedp.ID("preview-text"), "抖音 https://v.douyin.com/iRNBho6/ 京东 https://item.jd.com/100012043978.html"),
		)
		alice.waitFor("the two-link grid", `document.querySelectorAll('.preview-cell[data-era="open-api"][data-kind="direct"] .pv-chip').length === 2`)
		alice.do(chromedp.Click(chromedp.CSS(`.preview-cell[data-era="open-api"][data-kind="direct"]`)))
		alice.waitFor("the two-link message", `document.querySelectorAll('.preview-msg .why-panel').length === 2`)
		since := eval[[]string](alice, `[...document.querySelectorAll('.preview-msg .why-panel')].map((p) => p.querySelector(".why-rule").textContent + ": " + p.querySelector(".why-since").textContent)`)
		if want := []string{"open-api-card: never: a hypothetical era", "api-card: always"}; strings.Join(since, "|") != strings.Join(want, "|") {
			t.Errorf("Why? under the hypothetical era says %q, want %q", since, want)
		}
		// A product team's own links: scheme-less www. addresses are found,
		// and every other site is named by its host.
		alice.do(
			chromedp.Evaluate[chromedp.Void](`document.getElementById("preview-text").value = ""`),
			chromedp.SendKeys(chromedp.ID("preview-text"), "新品 www.mybrand.com/sale 和 https://shop.example.org/x"),
		)
		alice.waitFor("the other sites named by host", `[...document.querySelectorAll('.preview-cell[data-era="walled"][data-kind="group"] .pv-chip')].map((c) => c.textContent).join("|") === "mybrand.com · Hyperlink|shop.example.org · Hyperlink"`)
		alice.do(chromedp.KeyEvent(kb.Escape))
		alice.waitFor("the dialog closed", `!document.querySelector(".modal")`)
		if got := eval[int](alice, `document.querySelectorAll(".room-item").length`); got != rooms {
			t.Errorf("the preview changed the chat list: %d rooms, had %d", got, rooms)
		}
	})

	t.Run("language", func(t *testing.T) {
		alice.t, bob.t = t, t
		// Alice is in the group; Bob opens it too. Switching Alice's page to
		// Chinese changes her page only; the header's LinkBot language
		// button changes the room's, for Bob too.
		if groupRoom == "" {
			t.Skip("needs the group subtest")
		}
		alice.openRoom(groupRoom)
		bob.openRoom(groupRoom)
		alice.do(chromedp.Click(chromedp.CSS(".side-head .lang-btn")))
		alice.waitFor("the Chinese page", `document.documentElement.lang === "zh-CN" && document.querySelector(".composer .send-btn").textContent === "发送"`)
		if got := eval[string](alice, `localStorage.getItem("linkwall.lang")`); got != "zh" {
			t.Errorf("remembered language = %q, want zh", got)
		}
		if lang := eval[string](alice, fmt.Sprintf(`fetch("/api/v1/rooms/%s").then(r => r.json()).then(j => j.room.lang)`, groupRoom)); lang != "en" {
			t.Errorf("the page's language changed the room's LinkBot language to %q", lang)
		}
		if sub := eval[string](bob, `document.querySelector(".conv-sub").textContent`); !strings.Contains(sub, "English") {
			t.Errorf("Bob's header says %q, want LinkBot still answering in English", sub)
		}
		alice.do(chromedp.Click(chromedp.CSS(".conv-head .room-lang-btn")))
		bob.waitFor("LinkBot answering in Chinese", `document.querySelector(".conv-sub").textContent.includes("Chinese")`)
		alice.waitFor("Alice's header, in her Chinese page", `document.querySelector(".conv-sub").textContent.includes("LinkBot 使用中文回复")`)
		alice.do(chromedp.Click(chromedp.CSS(".conv-head .room-lang-btn")))
		bob.waitFor("LinkBot answering in English", `document.querySelector(".conv-sub").textContent.includes("English")`)
		alice.do(chromedp.Click(chromedp.CSS(".side-head .lang-btn")))
		alice.waitFor("the English page", `document.documentElement.lang === "en" && document.querySelector(".composer .send-btn").textContent === "Send"`)
	})

	t.Run("phone", func(t *testing.T) {
		alice.t, bob.t = t, t
		if groupRoom == "" {
			t.Skip("needs the group subtest")
		}
		// Under ~700px the list and the conversation are two screens, and
		// nothing is wider than the phone.
		alice.do(chromedp.EmulateViewport(390, 844), chromedp.Evaluate[chromedp.Void](`location.hash = "#/"`))
		defer alice.do(chromedp.EmulateViewport(1280, 800))
		alice.waitFor("the list screen", `getComputedStyle(document.querySelector(".sidebar")).display !== "none" && getComputedStyle(document.querySelector(".conv")).display === "none"`)
		if w := eval[int](alice, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("chat list is %dpx wide on a 390px phone", w)
		}
		alice.openRoom(groupRoom)
		alice.waitFor("the conversation screen", `getComputedStyle(document.querySelector(".sidebar")).display === "none" && getComputedStyle(document.querySelector(".conv")).display !== "none"`)
		if w := eval[int](alice, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("conversation is %dpx wide on a 390px phone", w)
		}
		// The header's buttons lose their visible labels here; each must
		// still have a name for screen readers.
		if unnamed := eval[[]string](alice, `[...document.querySelectorAll(".conv-head button")]
			.filter((b) => b.offsetParent && !b.innerText.trim() && !(b.getAttribute("aria-label") || "").trim())
			.map((b) => b.className)`); len(unnamed) > 0 {
			t.Errorf("header buttons without a name on a phone: %q", unnamed)
		}
		// The LinkBot language button is not cut off by the header's width.
		if r := eval[[]float64](alice, `(() => { const r = document.querySelector(".conv-head .room-lang-btn").getBoundingClientRect();
			const p = document.querySelector(".conv-sub").getBoundingClientRect(); return [r.width, r.right, p.right, r.bottom, p.bottom]; })()`); r[0] == 0 || r[1] > r[2]+1 || r[3] > r[4]+1 {
			t.Errorf("LinkBot language button at %v (width, right, header right, bottom, header bottom): cut off on a phone", r)
		}
		// The traffic table fits a 375px phone without scrolling sideways.
		// The traffic table fits a 375px phone without scrolling sideways,
		// in both languages.
		alice.do(chromedp.EmulateViewport(375, 667))
		for _, lang := range []string{"en", "zh-CN"} {
			if eval[string](alice, `document.documentElement.lang`) != lang {
				alice.do(chromedp.Evaluate[chromedp.Void](`history.back()`))
				alice.waitFor("the list screen", `getComputedStyle(document.querySelector(".sidebar")).display !== "none"`)
				alice.do(chromedp.Click(chromedp.CSS(".side-head .lang-btn")))
				alice.waitFor("the page in "+lang, fmt.Sprintf(`document.documentElement.lang === %q`, lang))
				alice.openRoom(groupRoom)
			}
			alice.do(chromedp.Click(chromedp.CSS(".conv-head .traffic-btn")), chromedp.WaitVisible(chromedp.CSS(".traffic-modal .pv")))
			w := eval[[]float64](alice, `(() => { const el = document.querySelector(".traffic-modal .table-wrap"); return [el.scrollWidth, el.clientWidth]; })()`)
			if w[0] > w[1] {
				t.Errorf("the traffic table (%s) is %gpx wide in %gpx on a 375px phone", lang, w[0], w[1])
			}
			alice.do(chromedp.KeyEvent(kb.Escape))
			alice.waitFor("the traffic panel closed", `!document.querySelector(".modal")`)
		}
		alice.do(chromedp.Evaluate[chromedp.Void](`history.back()`))
		alice.waitFor("the list screen", `getComputedStyle(document.querySelector(".sidebar")).display !== "none"`)
		alice.do(chromedp.Click(chromedp.CSS(".side-head .lang-btn")))
		alice.waitFor("the page in English", `document.documentElement.lang === "en"`)
		alice.do(chromedp.EmulateViewport(390, 844))
		alice.openRoom(groupRoom)
		alice.do(chromedp.Click(chromedp.CSS(".conv-head .back-btn")))
		alice.waitFor("back to the list", `location.hash === "#/" && getComputedStyle(document.querySelector(".sidebar")).display !== "none"`)
		// The Preview grid fits the phone: both chat kinds in view.
		alice.do(chromedp.Click(chromedp.CSS(".side-actions .preview-btn")))
		alice.waitFor("the preview grid", `document.querySelectorAll(".preview-cell .pv-chip").length > 0`)
		if w := eval[[]float64](alice, `[document.querySelector(".preview-table").scrollWidth, document.querySelector(".preview-grid").clientWidth]`); w[0] > w[1]+1 {
			t.Errorf("the preview table is %gpx wide in a %gpx dialog on a phone", w[0], w[1])
		}
		alice.do(chromedp.KeyEvent(kb.Escape))
		alice.waitFor("the dialog closed", `!document.querySelector(".modal")`)
	})

	t.Run("walkthrough", func(t *testing.T) {
		alice.t, bob.t = t, t
		def := eval[string](alice, `fetch("/api/v1/eras").then(r => r.json()).then(j => j.default)`)
		// The dialog offers the open chat (everyone in it sees the
		// walkthrough) or a new group of one; this plays it in a new group.
		alice.openRoom(groupRoom)
		before := groupRoom
		alice.do(chromedp.Evaluate[chromedp.Void](`document.querySelector(".side-actions .walkthrough-btn").click()`)) // hidden beside an open room on a phone
		alice.waitFor("the walkthrough dialog, the open chat first", `!!document.querySelector('.walkthrough-form input[value="here"]:checked') && !!document.querySelector('.walkthrough-form input[value="new"]')`)
		alice.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('.walkthrough-form input[value="new"]').click(); document.querySelector(".walkthrough-form button[type=submit]").click()`))
		alice.waitFor("the walkthrough group", fmt.Sprintf(`location.hash.startsWith("#/rooms/") && location.hash !== "#/rooms/%s" && document.querySelector(".conv-name").textContent.startsWith("Walkthrough")`, before))
		// LinkBot steps through every era, posting the sample links as a
		// one-to-one chat and a group show them, then returns the room to
		// the era it started in.
		alice.waitFor("every era's sample links", fmt.Sprintf(`document.querySelector(".era-bar").dataset.era === %q && [...document.querySelectorAll(".messages .msg-bot")].some((m) => m.textContent.includes("Walkthrough done")) && document.querySelectorAll('.messages .msg-bot .why-chip, .messages .msg-bot .card-wrap').length >= 10 && document.querySelector(".messages").dataset.loaded === "true"`, def))
		// Every sample says which era it shows (two per era); the share
		// token's chip says it is one.
		alice.waitFor("the samples' era labels and token chips", `document.querySelectorAll(".messages .msg-bot .sample-era").length === 10 &&
			[...document.querySelectorAll(".messages .msg-bot .sample-era")].filter((e) => e.textContent.includes("Walled garden")).length === 2 &&
			[...document.querySelectorAll(".messages .msg-bot .why-chip-name")].filter((e) => e.textContent === "Taobao · share token").length >= 2`)
		if low := eval[[]string](alice, contrastJS+`([".msg-bot .lk-blocked", ".msg-bot .lk-hyperlink", ".sample-era", ".msg-bot .why-chip"])`); len(low) > 0 {
			t.Errorf("walkthrough samples: text below 4.5:1 contrast or missing: %v", low)
		}
		alice.shot("desktop-en-walkthrough")
	})

	t.Run("markup", func(t *testing.T) {
		alice.t, bob.t = t, t
		// Names, group names and texts from others are all shown as text.
		const (
			name  = `<img src=x onerror=alert(2)>`
			group = `<b>G<img src=x onerror=alert(3)>` // 32 runes: the name cap
			text  = `<script>alert(4)</script><svg onload=alert(5)>`
		)
		aliceID := alice.userID()
		mallory := newWSUser(t, base, name)
		room := mallory.group(t, group, aliceID)
		mallory.dial(t)
		defer mallory.close()
		mallory.send(t, room, text)
		alice.waitFor("the group in the list", fmt.Sprintf(`!!document.querySelector('.room-item[data-room=%q]')`, room))
		alice.waitFor("the unread count", fmt.Sprintf(`(document.querySelector('.room-item[data-room=%q] .unread') || {}).textContent === "1"`, room))
		alice.openRoom(room)
		alice.waitFor("the count cleared", fmt.Sprintf(`!document.querySelector('.room-item[data-room=%q] .unread')`, room))
		alice.waitFor("the message", `document.querySelectorAll(".messages [data-seq]").length >= 1`)
		got := eval[[]string](alice, fmt.Sprintf(`[document.querySelector('.room-item[data-room=%q] .room-name').textContent, document.querySelector(".conv-name").textContent, document.querySelector(".messages .msg-name span").textContent, document.querySelector(".messages .msg-text").textContent]`, room))
		if want := []string{group, group, name, text}; !slices.Equal(got, want) {
			t.Errorf("page shows %q, want the text %q", got, want)
		}
		if n := eval[int](alice, `document.querySelectorAll('#app img[src="x"], #app script, #app svg[onload], #app b, #app [onerror]').length`); n != 0 {
			t.Errorf("%d elements were created from names or text", n)
		}
	})

	t.Run("card picture", func(t *testing.T) {
		alice.t, bob.t = t, t
		// The page's own renderer: an http(s) picture covers the tile once it
		// loads; any other scheme is never requested; no <img> is created.
		got := eval[[]bool](alice, `import("/render.js").then(async (m) => {
			const ctx = { meID: "me", meName: "Me", group: false, platformName: (id) => id, onLink() {}, onRetry() {} };
			const msg = (image) => ({ seq: 1, sender: { id: "jd", name: "JD" }, text: "", sent_at: new Date().toISOString(),
				links: [{ url: "https://item.jd.com/1.html", kind: "url", platform: "jd", outcome: "card", card: { title: "T", image, site_name: "JD" } }] });
			const good = m.messageElement(msg(location.origin + "/favicon.svg"), ctx);
			const own = m.messageElement(msg("/cards/moutai.svg"), ctx); // the demo catalogue's, served here
			// Protocol-relative addresses of another origin serving this very
			// picture would load if taken for paths (the parser drops tabs).
			const other = (location.hostname === "localhost" ? "127.0.0.1" : "localhost") + ":" + location.port;
			const bads = ["javascript:alert(1)", "//" + other + "/favicon.svg", "/\\" + other + "/favicon.svg", "/\t/" + other + "/favicon.svg"].map((u) => m.messageElement(msg(u), ctx));
			for (let i = 0; i < 60 && !(good.querySelector(".card-img.has-img") && own.querySelector(".card-img.has-img")); i++) await new Promise((r) => setTimeout(r, 50));
			await new Promise((r) => setTimeout(r, 200)); // as long again for any bad one to load
			const tile = (el) => el.querySelector(".card-img");
			return [tile(good).classList.contains("has-img"), tile(good).style.backgroundImage.includes("/favicon.svg"),
				tile(own).classList.contains("has-img") && tile(own).style.backgroundImage.includes(location.origin + "/cards/moutai.svg"),
				bads.some((b) => tile(b).classList.contains("has-img") || tile(b).style.backgroundImage !== ""),
				[good, own, ...bads].some((el) => el.querySelectorAll("img").length > 0)];
		})`)
		if want := []bool{true, true, true, false, false}; !slices.Equal(got, want) {
			t.Errorf("card pictures: [http(s) shown, as background, own path shown, javascript: or another host's path used, <img> made] = %v, want %v", got, want)
		}
	})

	t.Run("card description language", func(t *testing.T) {
		alice.t, bob.t = t, t
		// A card with a Chinese description shows it to a reader of the
		// page in Chinese, and the English one otherwise.
		got := eval[[]string](alice, `Promise.all([import("/render.js"), import("/i18n.js")]).then(([m, i18n]) => {
			const ctx = { meID: "me", meName: "Me", group: false, platformName: (id) => id, onLink() {}, onRetry() {} };
			const msg = { seq: 1, sender: { id: "jd", name: "JD" }, text: "", sent_at: new Date().toISOString(),
				links: [{ url: "https://item.jd.com/1.html", kind: "url", platform: "jd", outcome: "card", card: { title: "T", description: "In English", description_zh: "中文说明", site_name: "JD" } }] };
			const was = i18n.getLang();
			const out = [];
			for (const l of ["en", "zh"]) {
				i18n.setLang(l);
				out.push(m.messageElement(msg, ctx).querySelector(".card-desc").textContent);
			}
			i18n.setLang(was);
			return out;
		})`)
		if want := []string{"In English", "中文说明"}; !slices.Equal(got, want) {
			t.Errorf("card descriptions in en, zh: %q, want %q", got, want)
		}
	})

	t.Run("card fields", func(t *testing.T) {
		alice.t, bob.t = t, t
		// Card fields come from other sites (OpenGraph): every one is shown
		// as text, and no URL that is not http(s) becomes a link.
		got := eval[[]string](alice, `import("/render.js").then((m) => {
			const ctx = { meID: "me", meName: "Me", group: false, platformName: (id) => id, onLink() {}, onRetry() {} };
			const card = { title: "<img src=x onerror=alert(6)>", description: "<script>alert(7)</script>",
				price: "<svg onload=alert(8)>", site_name: "<b onmouseover=alert(9)>shop</b>", url: "javascript:alert(10)" };
			const el = m.messageElement({ seq: 1, sender: { id: "x", name: "X" }, text: "see javascript:alert(11)", sent_at: new Date().toISOString(),
				links: [{ url: "javascript:alert(10)", kind: "url", platform: "jd", outcome: "card", card },
					{ url: "javascript:alert(11)", kind: "url", platform: "", outcome: "hyperlink" }] }, ctx);
			document.body.appendChild(el);
			const text = (sel) => (el.querySelector(sel) || {}).textContent;
			const out = [text(".card-title"), text(".card-desc"), text(".card-price"), text(".card-site"),
				String(el.querySelectorAll("img, script, b, svg[onload], [onerror], [onload], [onmouseover]").length),
				String([...el.querySelectorAll("a[href]")].filter((a) => !/^https?:/.test(a.href)).length)];
			el.remove();
			return out;
		})`)
		want := []string{"<img src=x onerror=alert(6)>", "<script>alert(7)</script>", "<svg onload=alert(8)>", "<b onmouseover=alert(9)>shop</b>", "0", "0"}
		if !slices.Equal(got, want) {
			t.Errorf("card shows [title, description, price, site, elements made, non-http links] = %q, want %q", got, want)
		}
	})

	t.Run("CSP blocks inline script", func(t *testing.T) {
		alice.t, bob.t = t, t
		// Even markup that got into the DOM could not run: the page's CSP
		// refuses inline scripts and inline event handlers.
		got := eval[[]bool](alice, `new Promise((resolve) => {
			let violations = 0;
			const count = () => violations++;
			document.addEventListener("securitypolicyviolation", count);
			const s = document.createElement("script");
			s.textContent = "window.__inlineRan = true";
			document.body.appendChild(s);
			const d = document.createElement("div");
			d.setAttribute("onclick", "window.__handlerRan = true");
			document.body.appendChild(d);
			d.click();
			setTimeout(() => {
				document.removeEventListener("securitypolicyviolation", count);
				s.remove();
				d.remove();
				resolve([!!window.__inlineRan, !!window.__handlerRan, violations >= 2]);
			}, 300);
		})`)
		if want := []bool{false, false, true}; !slices.Equal(got, want) {
			t.Errorf("[inline script ran, inline handler ran, CSP violations reported] = %v, want %v", got, want)
		}
	})

	t.Run("logout", func(t *testing.T) {
		// A returning visitor skips the join screen; logging out ends the session.
		dan := newUser(t, browser, base, "Dan")
		dan.join()
		dan.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(".sidebar")))
		dan.do(chromedp.Click(chromedp.CSS(".side-head .logout-btn")), chromedp.WaitVisible(chromedp.ID("join-name")))
		dan.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("join-name")))
		// Signed out, the page has no session to look up: no request that
		// could only answer 401 (and log an error in the console).
		if n := eval[int](dan, `performance.getEntriesByType("resource").filter((e) => new URL(e.name).pathname.startsWith("/api/")).length`); n != 0 {
			t.Errorf("the join screen after signing out made %d API requests, want none", n)
		}
		if got := eval[int](dan, `fetch("/api/v1/me").then(r => r.status)`); got != http.StatusUnauthorized {
			t.Errorf("after logout GET /api/v1/me = %d, want 401", got)
		}
	})

	if *screenshots {
		t.Run("screenshots", func(t *testing.T) {
			takeScreenshots(t, browser, base)
		})
	}
}

// takeScreenshots renders the main views at desktop and phone width, in
// English and Chinese, for two new people with a short conversation each in
// a one-to-one chat and a group.
func takeScreenshots(t *testing.T, browser context.Context, base string) {
	bob := newUser(t, browser, base, "Bob")
	bob.join()
	alice := newUser(t, browser, base, "Alice")
	alice.join()
	bobID := bob.userID()

	alice.do(
		chromedp.Click(chromedp.CSS(".side-actions .new-chat")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`.pick[data-user=%q]`, bobID))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`.pick[data-user=%q]`, bobID))),
	)
	alice.waitFor("the direct room", `location.hash.startsWith("#/rooms/") && !!document.querySelector(".composer-input")`)
	direct := alice.roomID()
	alice.send("Free this weekend? 周末有空吗？")
	bob.openRoom(direct)
	bob.send("Sure! Look at this one: " + taobaoLink)

	alice.do(
		chromedp.Click(chromedp.CSS(".side-actions .new-group")),
		chromedp.WaitVisible(chromedp.ID("group-name")),
		chromedp.SetValue(chromedp.ID("group-name"), "Weekend deals 周末好物"),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`input[name=member][value=%q]`, bobID))),
		chromedp.Click(chromedp.CSS(".group-form button[type=submit]")),
	)
	alice.waitFor("the group", `location.hash.startsWith("#/rooms/") && document.querySelector(".conv-name").textContent.startsWith("Weekend")`)
	room := alice.roomID()
	alice.send("Found anything good this week? 这周有什么好物？")
	bob.openRoom(room)
	bob.send(linksText)
	bob.send("Only the JD one shows a picture and a price.")
	alice.send("Douyin is blocked in the group — send it to me one-to-one?")

	for _, lang := range []string{"en", "zh"} {
		for _, v := range []struct {
			name string
			w, h int64
		}{{"desktop", 1280, 800}, {"phone", 390, 844}} {
			alice.do(
				chromedp.EmulateViewport(v.w, v.h),
				chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem("linkwall.lang", %q)`, lang)),
				chromedp.Navigate(alice.base+"/"),
			)
			alice.waitFor("the chat list", `!!document.querySelector(".room-item") && document.body.dataset.ws === "up"`)
			if v.name == "phone" {
				alice.shot(fmt.Sprintf("%s-%s-list", v.name, lang))
			}
			alice.openRoom(room)
			alice.shot(fmt.Sprintf("%s-%s-chat", v.name, lang))
			alice.do(chromedp.Click(chromedp.CSS(".conv-head .era-btn")), chromedp.WaitVisible(chromedp.CSS(".timeline")))
			alice.shot(fmt.Sprintf("%s-%s-eras", v.name, lang))
			alice.do(chromedp.KeyEvent(kb.Escape))
			alice.do(chromedp.Click(chromedp.CSS(".conv-head .traffic-btn")), chromedp.WaitVisible(chromedp.CSS(".traffic-modal .pv")))
			alice.shot(fmt.Sprintf("%s-%s-traffic", v.name, lang))
			alice.do(chromedp.KeyEvent(kb.Escape))
			if v.name == "phone" {
				alice.openRoom(direct)
				alice.do(chromedp.Click(chromedp.CSS(`.messages a[data-platform="taobao"]`)), chromedp.WaitVisible(chromedp.CSS(".interstitial-login")))
				alice.shot(fmt.Sprintf("%s-%s-login-interstitial", v.name, lang))
				alice.do(chromedp.KeyEvent(kb.Escape))
			}
		}
	}
	alice.do(chromedp.EmulateViewport(1280, 800))
	// The join screen, in both languages.
	for _, lang := range []string{"en", "zh"} {
		u := newUser(t, alice.browser, alice.base, "Carol")
		u.do(
			chromedp.Navigate(u.base+"/"),
			chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem("linkwall.lang", %q)`, lang)),
			chromedp.Reload(),
			chromedp.WaitVisible(chromedp.ID("join-name")),
		)
		u.shot("desktop-" + lang + "-join")
	}
}

// TestBrowserReconnect restarts the server under an open page: the page
// shows the banner, keeps what was typed offline, reconnects by itself and
// resumes every room with no gap and no duplicate.
func TestBrowserReconnect(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	dir := t.TempDir()
	m1 := runMain(t, ctx, "127.0.0.1:0", dir)
	addr := m1.Addr()
	base := "http://" + addr

	browser := newBrowser(t, ctx)
	alice := newUser(t, browser, base, "Alice")
	alice.join()
	aliceID := alice.userID()

	carol := newWSUser(t, base, "Carol")
	room := carol.group(t, "Night shift", aliceID)
	carol.dial(t)
	for i := 1; i <= 3; i++ {
		carol.send(t, room, fmt.Sprintf("before %d", i))
	}
	alice.openRoom(room)
	alice.waitFor("carol's messages", `document.querySelectorAll(".messages [data-seq]").length === 3`)

	// The server goes away: the banner shows and a message typed now waits.
	carol.close()
	if err := m1.Close(); err != nil {
		t.Fatalf("close server: %v", err)
	}
	alice.waitFor("the reconnecting banner", `!document.getElementById("banner").hidden && document.body.dataset.ws === "down"`)
	// The banner has a row of its own: the header below it stays readable.
	if gap := eval[float64](alice, `document.querySelector(".conv-head").getBoundingClientRect().top - document.getElementById("banner").getBoundingClientRect().bottom`); gap < 0 {
		t.Errorf("the banner covers %.0f px of the chat's header", -gap)
	}
	alice.do(
		chromedp.SetValue(chromedp.CSS(".composer-input"), "typed offline"),
		chromedp.SendKeys(chromedp.CSS(".composer-input"), kb.Enter),
	)
	alice.waitFor("the pending bubble", `!!document.querySelector(".messages .msg.pending")`)

	// Others talk while the page is away: on the same data, served for a
	// moment on another address the page does not know. Then the server
	// comes back on the page's address and the page must resume what it missed.
	other := runMain(t, ctx, "127.0.0.1:0", dir)
	carol.base = "http://" + other.Addr()
	carol.dial(t)
	for i := 1; i <= 3; i++ {
		carol.send(t, room, fmt.Sprintf("after %d", i))
	}
	carol.close()
	if err := other.Close(); err != nil {
		t.Fatalf("close the other server: %v", err)
	}
	if got := eval[string](alice, `document.body.dataset.ws`); got != "down" {
		t.Fatalf("the page is connected while no server runs on its address (ws=%q)", got)
	}
	runMain(t, ctx, addr, dir)
	carol.base = base
	carol.dial(t)
	alice.waitFor("the page to reconnect", `document.getElementById("banner").hidden && document.body.dataset.ws === "up" && !document.querySelector(".messages .msg.pending")`)
	alice.waitFor("every message", `document.querySelectorAll(".messages [data-seq]").length >= 7`)
	carol.send(t, room, "live again")
	alice.waitFor("the live message", `[...document.querySelectorAll(".messages [data-seq]")].some(e => e.textContent.includes("live again"))`)

	seqs := eval[[]int](alice, `[...document.querySelectorAll(".messages [data-seq]")].map(e => +e.dataset.seq)`)
	for i, s := range seqs {
		if s != i+1 {
			t.Fatalf("page shows seqs %v, want 1..%d in order, each once", seqs, len(seqs))
		}
	}
	if len(seqs) != 8 {
		t.Errorf("page shows %d messages, want 8 (3 before, 1 typed offline, 3 after, 1 live)", len(seqs))
	}
	texts := eval[[]string](alice, `[...document.querySelectorAll(".messages [data-seq] .msg-text")].map(e => e.textContent)`)
	if n := strings.Count(strings.Join(texts, "\n"), "typed offline"); n != 1 {
		t.Errorf("the message typed offline shows %d times, want once: %q", n, texts)
	}
}

// runMain runs `linkwall serve` in-process on addr with data dir until the test ends.
func runMain(t *testing.T, ctx context.Context, addr, dir string) *Main {
	t.Helper()
	m := NewMain()
	m.Logger = zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel))
	if err := m.ParseFlags(ctx, []string{"--addr", addr, "--data", dir, "--walkthrough-step", "0"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// wsUser is a person using the API directly (REST and a WebSocket).
type wsUser struct {
	base, token string
	conn        *websocket.Conn
	frames      chan map[string]any
}

func newWSUser(t *testing.T, base, name string) *wsUser {
	t.Helper()
	var out struct{ Token string }
	callAPI(t, base, "", http.MethodPost, "/api/v1/session", map[string]any{"name": name}, 0, &out)
	return &wsUser{base: base, token: out.Token}
}

func (u *wsUser) group(t *testing.T, name string, members ...string) string {
	t.Helper()
	var out struct{ Room struct{ ID string } }
	callAPI(t, u.base, u.token, http.MethodPost, "/api/v1/rooms", map[string]any{"kind": "group", "name": name, "members": members}, 0, &out)
	return out.Room.ID
}

func (u *wsUser) dial(t *testing.T) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + u.token}, "Origin": {u.base}}
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(u.base, "http")+"/ws", h)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	u.conn = c
	u.frames = make(chan map[string]any, 256)
	go func(frames chan<- map[string]any) {
		defer close(frames)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(data), "\n") {
				var f map[string]any
				if json.Unmarshal([]byte(line), &f) == nil {
					select {
					case frames <- f:
					default: // nobody reads the others' traffic; drop it
					}
				}
			}
		}
	}(u.frames)
}

// send sends text and waits for the acknowledgement (the message is durable).
func (u *wsUser) send(t *testing.T, room, text string) {
	t.Helper()
	id := fmt.Sprintf("go-%d", time.Now().UnixNano())
	if err := u.conn.WriteJSON(map[string]any{"type": "send", "room": room, "text": text, "client_msg_id": id}); err != nil {
		t.Fatalf("send: %v", err)
	}
	timeout := time.After(waitTimeout)
	for {
		select {
		case f, ok := <-u.frames:
			if !ok {
				t.Fatalf("connection closed before the acknowledgement of %q", text)
			}
			if f["type"] == "error" {
				t.Fatalf("send %q: %v", text, f)
			}
			if f["type"] == "message" && f["client_msg_id"] == id {
				return
			}
		case <-timeout:
			t.Fatalf("no acknowledgement of %q", text)
		}
	}
}

func (u *wsUser) close() {
	if u.conn != nil {
		_ = u.conn.Close()
	}
}

// TestBrowserTwoTabs is the demo visitor's way in: two tabs of one browser
// as two people. The second tab starts signed in through the cookie, joins
// as someone else, and each tab then keeps its own person across reloads.
func TestBrowserTwoTabs(t *testing.T) {
	requireChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	base := startServer(t, ctx)
	browser := newBrowser(t, ctx)

	alice := newUser(t, browser, base, "Alice")
	alice.join()
	// A new tab in the same browser context shares the cookie jar but not
	// sessionStorage.
	tab, cancelTab := chromedp.NewContext(alice.ctx)
	t.Cleanup(cancelTab)
	// The first run creates the tab and must use tab itself (see newUser).
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("open a second tab: %v", err)
	}
	bob := &user{t: t, name: "Bob", ctx: tab, browser: browser, base: base}
	bob.do(chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(".sidebar")))
	if got := eval[string](bob, `document.querySelector(".side-sub").textContent`); !strings.Contains(got, "Alice") {
		t.Fatalf("a second tab with a valid cookie shows %q, want it signed in as Alice (join skipped)", got)
	}
	bob.do(
		chromedp.Click(chromedp.CSS(".switch-btn")),
		chromedp.WaitVisible(chromedp.ID("join-name")),
		chromedp.SetValue(chromedp.ID("join-name"), "Bob"),
		chromedp.Click(chromedp.CSS(".join-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(".sidebar")),
	)
	bob.waitFor("bob's socket", `document.body.dataset.ws === "up"`)

	// Alice's tab is still Alice, although the cookie now belongs to Bob.
	alice.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(".sidebar")))
	alice.waitFor("alice's socket after a reload", `document.body.dataset.ws === "up"`)
	if got := eval[string](alice, `document.querySelector(".side-sub").textContent`); !strings.Contains(got, "Alice") {
		t.Fatalf("after Bob joined in the other tab, Alice's tab shows %q", got)
	}
	bobID := eval[string](bob, `import("/api.js").then(m => m.api.me()).then(r => r.user.id)`)
	room := eval[string](alice, fmt.Sprintf(`import("/api.js").then(m => m.api.createDirect(%q)).then(r => r.room.id)`, bobID))
	alice.openRoom(room)
	seq := alice.send(linksText)
	bob.waitFor("the room in bob's list", fmt.Sprintf(`!!document.querySelector('.room-item[data-room=%q]')`, room))
	bob.openRoom(room)
	want := map[string]string{"taobao": "hyperlink", "douyin": "hyperlink", "jd": "card"}
	bob.waitOutcomes(seq, want)
	if own := eval[bool](bob, fmt.Sprintf(`document.querySelector('.messages [data-seq="%d"]').classList.contains("msg-own")`, seq)); own {
		t.Errorf("bob's tab shows alice's message as its own: both tabs are one person")
	}
	reply := bob.send("got it")
	alice.waitFor("bob's reply in alice's tab", fmt.Sprintf(`!!document.querySelector('.messages [data-seq="%d"]:not(.msg-own)')`, reply))
}

// contrastJS is a function of CSS selectors that returns, for each one whose
// first match has text contrast under 4.5:1 (or that matches nothing), the
// selector and its ratio.
const contrastJS = `((sels) => {
	const rgba = (c) => { const m = c.match(/[\d.]+/g).map(Number); return { r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1 }; };
	const over = (f, b) => ({ r: f.r * f.a + b.r * (1 - f.a), g: f.g * f.a + b.g * (1 - f.a), b: f.b * f.a + b.b * (1 - f.a) });
	const lum = (c) => [c.r, c.g, c.b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
		.reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
	const out = [];
	for (const sel of sels) {
		const el = document.querySelector(sel);
		if (!el) { out.push(sel + " missing"); continue; }
		const chain = [];
		for (let e = el; e; e = e.parentElement) chain.unshift(e);
		const bg = chain.reduce((acc, e) => over(rgba(getComputedStyle(e).backgroundColor), acc), { r: 255, g: 255, b: 255 });
		const fg = over(rgba(getComputedStyle(el).color), bg);
		const [a, b] = [lum(fg), lum(bg)];
		const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
		if (ratio < 4.5) out.push(sel + " " + ratio.toFixed(2));
	}
	return out;
})`
