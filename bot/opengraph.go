package bot

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
	"golang.org/x/sync/singleflight"
)

// Limits of the OpenGraph provider. Previews are fetched while a message
// is being posted, so every one is small and quick.
const (
	ogTimeout      = 3 * time.Second  // whole fetch, redirects included
	ogMaxBody      = 512 << 10        // OpenGraph tags live in <head>; no need to read more
	ogMaxHeader    = 64 << 10         // response header bytes
	ogMaxRedirects = 3                // redirects followed
	ogMaxAddrs     = 4                // resolved addresses tried per host
	ogCacheTTL     = 10 * time.Minute // a page's card is reused this long
	ogFailTTL      = time.Minute      // a failure is remembered this long, so a dead site is not hammered
	ogCacheSize    = 1024             // cached pages; the least recently used is dropped beyond
	ogMaxTitle     = 200              // runes
	ogMaxText      = 500              // runes of description, site name or price
	ogMaxImageURL  = 2048             // bytes; a longer picture address is dropped
	ogMaxFetches   = 16               // fetches in flight at once, over every message and preview
)

// OpenGraphFetcher builds cards from a page's OpenGraph tags. It never
// connects to a loopback, private, link-local or otherwise reserved
// address: the address is checked after DNS resolution, at dial time, for
// the first request and every redirect. Safe for concurrent use.
type OpenGraphFetcher struct {
	client   *http.Client
	dialer   *net.Dialer
	cache    *cardCache
	inflight singleflight.Group // one fetch per page at a time, shared by everyone asking
	slots    chan struct{}      // bounds the fetches in flight in the process

	// Test hooks: tests fetch from httptest servers on 127.0.0.1 and
	// resolve names without DNS.
	allowLoopback bool
	lookup        func(ctx context.Context, host string) ([]netip.Addr, error)
}

// NewOpenGraphFetcher returns a fetcher with the limits above.
func NewOpenGraphFetcher() *OpenGraphFetcher {
	f := &OpenGraphFetcher{
		cache: newCardCache(ogCacheSize, time.Now),
		slots: make(chan struct{}, ogMaxFetches),
		lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
	}
	f.dialer = &net.Dialer{
		Timeout: ogTimeout,
		// Second line of defence: whatever address a connection ends up
		// using is checked once more on the socket itself.
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w to %q: %v", errRefused, address, err)
			}
			return checkAddr(ap.Addr(), f.allowLoopback)
		},
	}
	f.client = &http.Client{
		Timeout: ogTimeout,
		Transport: &http.Transport{
			Proxy: nil, // a proxy would dial on our behalf, unchecked
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return f.dial(ctx, network, addr)
			},
			TLSHandshakeTimeout:    ogTimeout,
			ResponseHeaderTimeout:  ogTimeout,
			MaxResponseHeaderBytes: ogMaxHeader,
			MaxIdleConns:           16,
			IdleConnTimeout:        30 * time.Second,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > ogMaxRedirects {
				return fmt.Errorf("more than %d redirects", ogMaxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to a %s: URL", req.URL.Scheme)
			}
			return nil
		},
	}
	return f
}

// dial resolves addr's host itself and connects only to an allowed address.
func (f *OpenGraphFetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if numericHost(host) {
		return nil, fmt.Errorf("%w to %q: not a canonical IP address", errRefused, host)
	} else if ips, err = f.lookup(ctx, host); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	err = fmt.Errorf("resolve %s: no address", host)
	for i, ip := range ips {
		if i == ogMaxAddrs {
			break
		}
		if e := checkAddr(ip, f.allowLoopback); e != nil {
			err = e
			continue
		}
		conn, e := f.dialer.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if e == nil {
			return conn, nil
		}
		err = e
	}
	return nil, err
}

// Fetch returns the card of the page at rawURL (http or https), from the
// cache when fresh. Callers asking for the same page at once share one
// fetch, and at most ogMaxFetches run at a time.
func (f *OpenGraphFetcher) Fetch(ctx context.Context, rawURL string) (*Card, error) {
	if c, err, ok := f.cache.get(rawURL); ok {
		return c, err
	}
	ch := f.inflight.DoChan(rawURL, func() (any, error) {
		// Not bound to the first caller: the others wait for it too.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ogTimeout)
		defer cancel()
		select {
		case f.slots <- struct{}{}:
		case <-fctx.Done():
			return nil, errors.New("too many previews are being fetched") // not cached: says nothing about the page
		}
		defer func() { <-f.slots }()
		c, err := f.fetch(fctx, rawURL)
		f.cache.put(rawURL, c, err)
		return c, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		card := *r.Val.(*Card) // each caller gets its own copy
		return &card, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *OpenGraphFetcher) fetch(ctx context.Context, rawURL string) (*Card, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("bad URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, errors.New("not an http(s) URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "linkwall-bot/1 (OpenGraph preview)")
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := f.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is already known to the caller
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/html" && mt != "application/xhtml+xml" {
		return nil, fmt.Errorf("not an HTML page (%q)", mt)
	}
	// Many Chinese sites still send GBK or GB18030: decode to UTF-8 by the
	// Content-Type's charset, else the page's <meta charset>, else UTF-8.
	body, err := charset.NewReader(io.LimitReader(resp.Body, ogMaxBody), resp.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("page encoding: %w", err)
	}
	card, err := parseOpenGraph(body, resp.Request.URL)
	if err != nil {
		return nil, err
	}
	card.URL = rawURL
	return card, nil
}

// parseOpenGraph reads the card of an HTML page from its <head>: the og:
// tags, falling back to <title> and the description meta tag. base
// resolves a relative image URL.
func parseOpenGraph(r io.Reader, base *url.URL) (*Card, error) {
	z := html.NewTokenizer(r)
	var c Card
	var title, desc, amount, currency string
	inTitle := false
loop:
	for {
		switch z.Next() {
		case html.ErrorToken:
			break loop // io.EOF, the body cap, or broken HTML: use what was read
		case html.TextToken:
			if inTitle && title == "" {
				title = string(z.Text())
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch atom.Lookup(name) {
			case atom.Head:
				break loop
			case atom.Title:
				inTitle = false
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch atom.Lookup(name) {
			case atom.Body:
				break loop
			case atom.Title:
				inTitle = true
			case atom.Meta:
				var prop, content string
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					switch string(k) {
					case "property", "name":
						prop = strings.ToLower(string(v))
					case "content":
						content = string(v)
					}
				}
				switch prop {
				case "og:title":
					c.Title = content
				case "og:description":
					c.Description = content
				case "description":
					desc = content
				case "og:image", "og:image:url", "og:image:secure_url":
					if c.Image == "" {
						c.Image = content
					}
				case "og:site_name":
					c.SiteName = content
				case "product:price:amount", "og:price:amount":
					amount = content
				case "product:price:currency", "og:price:currency":
					currency = content
				}
			}
		}
	}
	c.Title = clean(cmpOr(c.Title, title), ogMaxTitle)
	if c.Title == "" {
		return nil, errors.New("the page has no title or OpenGraph tags")
	}
	c.Description = clean(cmpOr(c.Description, desc), ogMaxText)
	c.SiteName = clean(cmpOr(c.SiteName, base.Hostname()), ogMaxText)
	if amount = clean(amount, ogMaxText); amount != "" {
		c.Price = strings.TrimSpace(clean(currency, ogMaxText) + " " + amount)
	}
	c.Image = imageURL(base, c.Image)
	return &c, nil
}

func cmpOr(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}

// clean collapses white space, drops invalid UTF-8 and caps the length.
func clean(s string, maxRunes int) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "")), " ")
	if utf8.RuneCountInString(s) <= maxRunes {
		return s
	}
	return string([]rune(s)[:maxRunes-1]) + "…"
}

// imageURL resolves ref against base and keeps it only if it is http(s)
// with a host name. The result is parsed again because resolving can
// build a URL that does not parse ("//::" becomes "https://::").
func imageURL(base *url.URL, ref string) string {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return ""
	}
	u, err := base.Parse(ref)
	if err != nil || !httpWithHost(u) {
		return ""
	}
	s := u.String()
	if len(s) > ogMaxImageURL {
		return "" // it would be stored with every message and sent to every member
	}
	if u, err = url.Parse(s); err != nil || !httpWithHost(u) {
		return ""
	}
	return s
}

func httpWithHost(u *url.URL) bool {
	return (u.Scheme == "http" || u.Scheme == "https") && u.Hostname() != ""
}

// cardCache is a bounded LRU of fetched cards (and failures) with expiry.
type cardCache struct {
	mu    sync.Mutex
	max   int
	now   func() time.Time
	lru   *list.List // front: most recently used *cacheEntry
	byURL map[string]*list.Element
}

type cacheEntry struct {
	url     string
	card    *Card
	err     error
	expires time.Time
}

func newCardCache(max int, now func() time.Time) *cardCache {
	return &cardCache{max: max, now: now, lru: list.New(), byURL: map[string]*list.Element{}}
}

// get returns a copy of the cached card, so callers may not alter the cache.
func (c *cardCache) get(key string) (*Card, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byURL[key]
	if !ok {
		return nil, nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.byURL, key)
		return nil, nil, false
	}
	c.lru.MoveToFront(el)
	if e.err != nil {
		return nil, e.err, true
	}
	card := *e.card
	return &card, nil, true
}

func (c *cardCache) put(key string, card *Card, err error) {
	ttl := ogCacheTTL
	if err != nil {
		ttl, card = ogFailTTL, nil
	} else {
		cp := *card
		card = &cp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{url: key, card: card, err: err, expires: c.now().Add(ttl)}
	if el, ok := c.byURL[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.byURL[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byURL, old.Value.(*cacheEntry).url)
	}
}

func (c *cardCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
