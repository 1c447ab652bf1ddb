package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

func TestCheckAddr(t *testing.T) {
	for addr, allowed := range map[string]bool{
		"93.184.216.34":          true,
		"2606:4700:4700::1111":   true,
		"127.0.0.1":              false,
		"127.1.2.3":              false,
		"::1":                    false,
		"10.0.0.1":               false,
		"172.16.5.4":             false,
		"192.168.1.1":            false,
		"169.254.169.254":        false, // cloud metadata
		"fe80::1":                false,
		"0.0.0.0":                false,
		"::":                     false,
		"224.0.0.1":              false,
		"ff02::1":                false,
		"100.64.0.1":             false, // CGNAT
		"192.0.2.1":              false, // documentation
		"198.51.100.7":           false,
		"203.0.113.9":            false,
		"198.18.0.1":             false,
		"240.0.0.1":              false,
		"255.255.255.255":        false,
		"fc00::1":                false,
		"fd12:3456::1":           false,
		"2001:db8::1":            false,
		"::ffff:127.0.0.1":       false, // IPv4-mapped loopback
		"::ffff:10.1.2.3":        false,
		"::ffff:169.254.169.254": false,
		"::ffff:93.184.216.34":   true,
		"64:ff9b::7f00:1":        false, // NAT64 of 127.0.0.1
		"2002:7f00:1::":          false, // 6to4 of 127.0.0.1
		"::127.0.0.1":            false, // IPv4-compatible
	} {
		err := checkAddr(netip.MustParseAddr(addr), false)
		if (err == nil) != allowed {
			t.Errorf("checkAddr(%s) = %v, want allowed=%v", addr, err, allowed)
		}
	}
	if err := checkAddr(netip.MustParseAddr("127.0.0.1"), true); err != nil {
		t.Errorf("loopback refused with allowLoopback: %v", err)
	}
	if err := checkAddr(netip.MustParseAddr("10.0.0.1"), true); err == nil {
		t.Error("allowLoopback let a private address through")
	}
}

const ogPage = `<!doctype html><html><head>
<title>Fallback title</title>
<meta property="og:title" content="  Acme   Rocket Skates ">
<meta property="og:description" content="Fast skates.">
<meta property="og:image" content="/img/skates.png">
<meta property="og:site_name" content="Acme Shop">
<meta property="product:price:amount" content="99.00">
<meta property="product:price:currency" content="CNY">
</head><body><meta property="og:title" content="ignored in body"></body></html>`

// ogServer serves ogPage at /p and counts the requests it gets.
func ogServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/p", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, ogPage)
	})
	gbk := func(s string) string {
		b, err := simplifiedchinese.GBK.NewEncoder().String(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mux.HandleFunc("/gbk", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=gbk")
		fmt.Fprint(w, gbk(`<html><head><meta property="og:title" content="淘宝特价 手机"><meta property="og:description" content="限时优惠"></head></html>`))
	})
	mux.HandleFunc("/gbk-meta", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, gbk(`<html><head><meta charset="gb18030"><title>京东 商品</title></head></html>`))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(100 * time.Millisecond) // long enough for every caller to ask
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, ogPage)
	})
	mux.HandleFunc("/long-image", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<html><head><title>t</title><meta property="og:image" content="/`+strings.Repeat("a", ogMaxImageURL)+`"></head></html>`)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"title":"x"}`)
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><head>"+strings.Repeat("<!-- padding -->", ogMaxBody/16+1)+`<title>too late</title></head></html>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &hits
}

// testFetcher returns a fetcher that may reach loopback (the httptest
// server) and resolves names from a fixed table instead of DNS.
func testFetcher(names map[string][]string) *OpenGraphFetcher {
	f := NewOpenGraphFetcher()
	f.allowLoopback = true
	f.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, a := range names[host] {
			out = append(out, netip.MustParseAddr(a))
		}
		if out == nil {
			return nil, errors.New("no such host")
		}
		return out, nil
	}
	return f
}

func TestOpenGraphRefusesLoopbackByDefault(t *testing.T) {
	srv, hits := ogServer(t)
	f := NewOpenGraphFetcher()
	_, err := f.Fetch(context.Background(), srv.URL+"/p")
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Fetch of a loopback server: %v, want a loopback refusal", err)
	}
	if hits.Load() != 0 {
		t.Errorf("the server got %d requests", hits.Load())
	}
}

func TestOpenGraphFetch(t *testing.T) {
	srv, hits := ogServer(t)
	f := testFetcher(nil)
	ctx := context.Background()
	card, err := f.Fetch(ctx, srv.URL+"/p")
	if err != nil {
		t.Fatal(err)
	}
	want := Card{Title: "Acme Rocket Skates", Description: "Fast skates.", Image: srv.URL + "/img/skates.png",
		Price: "CNY 99.00", SiteName: "Acme Shop", URL: srv.URL + "/p"}
	if *card != want {
		t.Errorf("card = %+v\nwant   %+v", *card, want)
	}
	card.Title = "changed by the caller"
	again, err := f.Fetch(ctx, srv.URL+"/p")
	if err != nil || again.Title != want.Title || hits.Load() != 1 {
		t.Errorf("second fetch: %+v, %v, %d requests; want the cached card and 1 request", again, err, hits.Load())
	}
}

// TestOpenGraphEncodings: pages in GBK or GB18030, named by the header or
// by <meta charset>, give readable cards; an overlong picture address is dropped.
func TestOpenGraphEncodings(t *testing.T) {
	srv, _ := ogServer(t)
	f := testFetcher(nil)
	for path, want := range map[string]Card{
		"/gbk":        {Title: "淘宝特价 手机", Description: "限时优惠"},
		"/gbk-meta":   {Title: "京东 商品"},
		"/long-image": {Title: "t"},
	} {
		card, err := f.Fetch(context.Background(), srv.URL+path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if card.Title != want.Title || card.Description != want.Description || card.Image != "" {
			t.Errorf("%s: title %q, description %q, image %d bytes; want %q, %q, none", path, card.Title, card.Description, len(card.Image), want.Title, want.Description)
		}
	}
}

// TestOpenGraphSharedFetch: messages posting the same new link at once
// cause one request to the site, and each gets its own card.
func TestOpenGraphSharedFetch(t *testing.T) {
	srv, hits := ogServer(t)
	f := testFetcher(nil)
	cards := make([]*Card, 10)
	var wg sync.WaitGroup
	for i := range cards {
		wg.Go(func() {
			c, err := f.Fetch(context.Background(), srv.URL+"/slow")
			if err != nil {
				t.Error(err)
				return
			}
			cards[i] = c
		})
	}
	wg.Wait()
	if hits.Load() != 1 {
		t.Errorf("%d requests for one page fetched by 10 callers at once, want 1", hits.Load())
	}
	if cards[0] == nil || cards[1] == nil || cards[0] == cards[1] || cards[0].Title != "Acme Rocket Skates" {
		t.Errorf("callers got %p and %p, want two copies of the card", cards[0], cards[1])
	}
}

func TestOpenGraphRefusals(t *testing.T) {
	srv, hits := ogServer(t)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	f := testFetcher(map[string][]string{
		"internal.example": {"10.1.2.3"},
		"meta.example":     {"169.254.169.254"},
		"mapped.example":   {"::ffff:10.0.0.1"},
		"mixed.example":    {"192.168.0.1", "127.0.0.1"},
	})
	for name, tc := range map[string]struct{ url, msg string }{
		"decimal host":           {"http://2130706433:" + port + "/p", "not a canonical IP address"},
		"hex host":               {"http://0x7f000001:" + port + "/p", "not a canonical IP address"},
		"dotted hex host":        {"http://0x7f.0.0.1:" + port + "/p", "not a canonical IP address"},
		"octal host":             {"http://0177.0.0.1:" + port + "/p", "not a canonical IP address"},
		"short host":             {"http://127.1:" + port + "/p", "not a canonical IP address"},
		"name to private":        {"http://internal.example:" + port + "/p", "private address"},
		"name to metadata":       {"http://meta.example/latest/meta-data/", "link-local address"},
		"name to mapped private": {"http://mapped.example:" + port + "/p", "private address"},
		"metadata literal":       {"http://169.254.169.254/latest/meta-data/", "link-local address"},
		"mapped literal":         {"http://[::ffff:10.0.0.1]:" + port + "/p", "private address"},
		"redirect to metadata":   {srv.URL + "/redirect?to=" + url.QueryEscape("http://169.254.169.254/"), "link-local address"},
		"redirect to private":    {srv.URL + "/redirect?to=" + url.QueryEscape("http://internal.example:"+port+"/p"), "private address"},
		"redirect loop":          {srv.URL + "/loop", "redirects"},
		"redirect to file":       {srv.URL + "/redirect?to=" + url.QueryEscape("file:///etc/passwd"), "redirect"},
		"not html":               {srv.URL + "/json", "not an HTML page"},
		"body cap":               {srv.URL + "/huge", "no title"},
		"not found":              {srv.URL + "/missing", "status 404"},
		"not http":               {"ftp://example.com/", "not an http(s) URL"},
	} {
		t.Run(name, func(t *testing.T) {
			before := hits.Load()
			card, err := f.Fetch(context.Background(), tc.url)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Fetch(%s) = %+v, %v; want an error containing %q", tc.url, card, err, tc.msg)
			}
			if !strings.HasPrefix(tc.url, srv.URL) && hits.Load() != before {
				t.Error("the server was reached")
			}
		})
	}
	// A name with a private and a loopback address: only the allowed one is dialled.
	if _, err := f.Fetch(context.Background(), "http://mixed.example:"+port+"/p"); err != nil {
		t.Errorf("mixed.example: %v", err)
	}
}

func TestCardCache(t *testing.T) {
	now := time.Unix(0, 0)
	c := newCardCache(2, func() time.Time { return now })
	c.put("a", &Card{Title: "A"}, nil)
	c.put("b", nil, errors.New("down"))
	if card, err, ok := c.get("a"); !ok || err != nil || card.Title != "A" {
		t.Fatalf("get(a) = %v, %v, %v", card, err, ok)
	}
	if _, err, ok := c.get("b"); !ok || err == nil {
		t.Fatalf("get(b): failure not cached")
	}
	c.put("c", &Card{Title: "C"}, nil) // evicts the least recently used: a was used before b
	if _, _, ok := c.get("a"); ok {
		t.Error("a survived eviction")
	}
	if c.len() != 2 {
		t.Errorf("len = %d, want 2", c.len())
	}
	now = now.Add(ogFailTTL)
	if _, _, ok := c.get("b"); ok {
		t.Error("failure still cached after its TTL")
	}
	if _, _, ok := c.get("c"); !ok {
		t.Error("card expired before its TTL")
	}
	now = now.Add(ogCacheTTL)
	if _, _, ok := c.get("c"); ok {
		t.Error("card cached after its TTL")
	}
}

// TestBotOpenGraphCards runs the whole bot with a policy that assigns the
// OpenGraph provider to a product team's domain.
func TestBotOpenGraphCards(t *testing.T) {
	srv, _ := ogServer(t)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	src := strings.Replace(string(defaultPolicyYAML), "\neras:", `
  - id: acme
    name: Acme
    name_zh: 极致
    owner: tencent
    category: first-party
    api: true
    card: opengraph
    domains: [acme.example, down.example]

eras:`, 1)
	p, err := LoadPolicy("acme.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f := testFetcher(map[string][]string{"shop.acme.example": {"127.0.0.1"}, "down.example": {"10.9.9.9"}})
	text := fmt.Sprintf("新品 http://shop.acme.example:%s/p，旧店 http://down.example:%s/p ，京东 https://item.jd.com/100012043978.html", port, port)

	res := New(p, nil, WithOpenGraph(f)).Decide(context.Background(), text, Group, "walled")
	if len(res.Links) != 3 {
		t.Fatalf("links: %+v", res.Links)
	}
	if l := res.Links[0]; l.Outcome != CardView || l.Card == nil || l.Card.Title != "Acme Rocket Skates" {
		t.Errorf("acme link: %+v", l)
	}
	if l := res.Links[1]; l.Outcome != Hyperlink || l.Card != nil || !strings.Contains(l.Reason, "preview could not be loaded (the site's address is not public)") ||
		!strings.Contains(l.ReasonZh, "预览无法加载") || strings.Contains(l.Reason, "10.9.9.9") {
		t.Errorf("unreachable link: %+v", l)
	}
	if l := res.Links[2]; l.Outcome != CardView || l.Card == nil || l.Card.Price != "¥1499.00" {
		t.Errorf("jd link: %+v", l)
	}

	// A site that does not answer before the message's deadline.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	slowURL := strings.Replace(slow.URL, "127.0.0.1", "slow.acme.example", 1) + "/p"
	f.lookup = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	res = New(p, nil, WithOpenGraph(f)).Decide(ctx, "看 "+slowURL, Group, "walled")
	if l := res.Links[0]; l.Outcome != Hyperlink || !strings.Contains(l.Reason, "did not answer in time") {
		t.Errorf("slow site: %+v", l)
	}

	// Without a fetcher, the OpenGraph links degrade too.
	res = New(p, nil).Decide(context.Background(), text, Group, "walled")
	if l := res.Links[0]; l.Outcome != Hyperlink || !strings.Contains(l.Reason, "no OpenGraph fetcher") {
		t.Errorf("no fetcher: %+v", l)
	}
}

func TestParseOpenGraphFallbacks(t *testing.T) {
	base, _ := url.Parse("https://shop.example/a/b")
	card, err := parseOpenGraph(strings.NewReader(`<head><title> Plain
	page </title><meta name="description" content="About it"><meta property="og:image" content="javascript:alert(1)"></head>`), base)
	if err != nil {
		t.Fatal(err)
	}
	if card.Title != "Plain page" || card.Description != "About it" || card.Image != "" || card.SiteName != "shop.example" {
		t.Errorf("card = %+v", card)
	}
	long := strings.Repeat("长", ogMaxTitle*2)
	card, err = parseOpenGraph(strings.NewReader(`<meta property="og:title" content="`+long+`">`), base)
	if err != nil || len([]rune(card.Title)) != ogMaxTitle {
		t.Errorf("long title: %d runes, %v", len([]rune(card.Title)), err)
	}
	if _, err := parseOpenGraph(strings.NewReader(`<p>no head</p>`), base); err == nil {
		t.Error("a page without a title made a card")
	}
}

// TestDialerControl checks the second line of defence: the socket-level
// check refuses a loopback address even when asked to dial it directly.
func TestDialerControl(t *testing.T) {
	f := NewOpenGraphFetcher()
	_, err := f.dialer.DialContext(context.Background(), "tcp", "127.0.0.1:9")
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("dial 127.0.0.1: %v", err)
	}
	_, err = f.dialer.DialContext(context.Background(), "tcp", "[::ffff:127.0.0.1]:9")
	if err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("dial ::ffff:127.0.0.1: %v", err)
	}
}

// FuzzParseOpenGraph feeds parseOpenGraph what a fetched page may hold:
// whatever the HTML, it must not panic, and a card it returns must have
// a title, collapsed white space, valid UTF-8, fields within their caps
// and an image that is an absolute http(s) URL or nothing.
func FuzzParseOpenGraph(f *testing.F) {
	for _, page := range []string{
		`<html><head><meta property="og:title" content="Phone"><meta property="og:image" content="/p.jpg">` +
			`<meta property="product:price:amount" content="5999.00"><meta property="product:price:currency" content="CNY"></head></html>`,
		`<head><title> Plain
	page </title><meta name="description" content="About it"><meta property="og:image" content="javascript:alert(1)"></head>`,
		`<meta property="og:title" content="  a  &amp; b "><meta property="og:image:secure_url" content="//cdn.example/x.png">`,
		`<title>t</title><body><meta property="og:title" content="after body">`,
		`<meta property="og:title" content="` + "\xff\xfe" + `"><title>fallback</title>`,
		`<p>no head</p>`,
		`<head><title>`,
		`<meta property="og:title" content="` + strings.Repeat("长", ogMaxTitle+50) + `"><meta name="description" content="` +
			strings.Repeat("描述 ", ogMaxText) + `">`,
	} {
		f.Add(page)
	}
	base, err := url.Parse("https://shop.example/item/1.html")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, page string) {
		card, err := parseOpenGraph(strings.NewReader(page), base)
		if err != nil {
			if card != nil {
				t.Fatalf("a card with an error: %+v, %v", card, err)
			}
			return
		}
		if card.Title == "" {
			t.Fatal("a card without a title")
		}
		for _, field := range []struct {
			name, v string
			max     int
		}{
			{"title", card.Title, ogMaxTitle},
			{"description", card.Description, ogMaxText},
			{"site name", card.SiteName, ogMaxText},
			{"price", card.Price, 2*ogMaxText + 1},
		} {
			if !utf8.ValidString(field.v) {
				t.Errorf("%s %q is not valid UTF-8", field.name, field.v)
			}
			if strings.Join(strings.Fields(field.v), " ") != field.v {
				t.Errorf("%s %q has white space to collapse", field.name, field.v)
			}
			if n := utf8.RuneCountInString(field.v); n > field.max {
				t.Errorf("%s has %d runes, more than %d", field.name, n, field.max)
			}
		}
		if card.Image != "" {
			u, err := url.Parse(card.Image)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
				t.Errorf("image %q is not an absolute http(s) URL with a host name", card.Image)
			}
		}
		again, _ := parseOpenGraph(strings.NewReader(page), base)
		if *again != *card {
			t.Errorf("two parses differ: %+v and %+v", card, again)
		}
	})
}
