package bot

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
	"mvdan.cc/xurls/v2"
)

// MaxLinks is how many links of one message the bot handles. A chat
// message rarely holds more than a few; the cap bounds the work (and the
// card fetches) one message can cause. Result.Truncated reports a message
// that had more.
const MaxLinks = 20

// Link kinds.
const (
	KindURL   = "url"
	KindToken = "token" // a Taobao ￥…￥ share token
)

// Share tokens are short alphanumeric codes; anything longer is not one.
const (
	minTokenLen = 4
	maxTokenLen = 64
)

// Found is one link extracted from a message, classified but not decided.
type Found struct {
	URL      string // as it should be opened (https:// added where missing); a token as written
	Kind     string // KindURL or KindToken
	Host     string // lower-case host of a URL, "" for a token
	Platform string // registry id, "" for a site not in the registry
}

// Extractor finds the links of messages. The regular expressions come from
// xurls (its Strict family restricted to http and https); they only run on
// short candidate spans found by a byte scan, which keeps extraction of a
// chat message in the microsecond range.
type Extractor struct {
	schemed *regexp.Regexp // http(s)://… with xurls' rules for where a URL ends
	bare    *regexp.Regexp // the same rules for a scheme-less host/path
}

// NewExtractor compiles the expressions; it is meant to be created once.
func NewExtractor() *Extractor {
	schemed, err := xurls.StrictMatchingScheme(`https?://`)
	if err != nil {
		panic(err) // a constant expression
	}
	bare, err := xurls.StrictMatchingScheme(``)
	if err != nil {
		panic(err)
	}
	return &Extractor{schemed: schemed, bare: bare}
}

// Extract returns the distinct links of text in order of appearance, at
// most MaxLinks of them, classified against p's registry; truncated
// reports that there were more.
//
// People paste links into Chinese text without spaces, so a link ends at
// the first non-ASCII character (fullwidth punctuation included); shared
// links percent-encode non-ASCII paths. Links without a scheme are taken
// only for domains of the registry and for "www." hosts under a public
// suffix (wwwHost), since "file.txt" or "v1.2" are not links. Only http
// and https links exist: "javascript:" and the like never match.
func (x *Extractor) Extract(p *Policy, text string) (found []Found, truncated bool) {
	s := scan{x: x, p: p}
	// Bytes of multi-byte UTF-8 sequences are all >= 0x80, so stepping
	// byte by byte never mistakes part of a character for ASCII.
	for i := 0; i < len(text) && !s.truncated; {
		c := text[i]
		switch {
		case c > ' ' && c < utf8.RuneSelf:
			j := i + 1
			for j < len(text) && text[j] > ' ' && text[j] < utf8.RuneSelf {
				j++
			}
			s.span(text, i, j)
			i = j
		case c == 0xEF || c == 0xC2: // may start ￥ (EF BF A5) or ¥ (C2 A5)
			if n := s.token(text, i); n > 0 {
				i = n
				continue
			}
			i++
		default:
			i++
		}
	}
	return s.found, s.truncated
}

type scan struct {
	x         *Extractor
	p         *Policy
	found     []Found
	truncated bool
}

func (s *scan) add(f Found) {
	for _, g := range s.found {
		if g.URL == f.URL {
			return
		}
	}
	if len(s.found) == MaxLinks {
		s.truncated = true
		return
	}
	if s.found == nil {
		s.found = make([]Found, 0, 4)
	}
	s.found = append(s.found, f)
}

// token recognises a share token (￥ or ¥, 4–64 letters or digits, ￥ or
// ¥) at text[i:] and returns the index after it, or 0.
func (s *scan) token(text string, i int) int {
	if s.p.tokens == "" {
		return 0
	}
	open := yenLen(text[i:])
	if open == 0 {
		return 0
	}
	j := i + open
	k := j
	for k < len(text) && k-j <= maxTokenLen && isAlnum(text[k]) {
		k++
	}
	n := k - j
	closing := yenLen(text[k:])
	if n < minTokenLen || n > maxTokenLen || closing == 0 {
		return 0
	}
	s.add(Found{URL: text[i : k+closing], Kind: KindToken, Platform: s.p.tokens})
	return k + closing
}

// yenLen returns the length of a fullwidth ￥ or a ¥ at the start of s, or 0.
func yenLen(s string) int {
	switch {
	case strings.HasPrefix(s, "￥"):
		return len("￥")
	case strings.HasPrefix(s, "¥"):
		return len("¥")
	}
	return 0
}

// span handles a run text[a:b] of printable ASCII: schemed links where
// "http://" or "https://" starts, registry domains elsewhere.
func (s *scan) span(text string, a, b int) {
	sp := text[a:b]
	pos := 0
	for pos < len(sp) && !s.truncated {
		h := indexScheme(sp, pos)
		end := len(sp)
		if h >= 0 {
			end = h
		}
		s.bareLinks(sp, pos, end)
		if h < 0 {
			return
		}
		start, end, ok := s.x.find(s.x.schemed, sp[h:])
		if !ok {
			return
		}
		s.schemedLink(sp[h+start : h+end])
		pos = h + end
	}
}

// find returns where re matches in s, like re.FindStringIndex. Most links
// consist only of characters that xurls accepts anywhere in a URL; then
// the match runs from the start to the last character that may end a URL,
// and the regular expression (most of the cost of extraction) is skipped.
// FuzzExtract checks that both ways agree.
func (x *Extractor) find(re *regexp.Regexp, s string) (start, end int, ok bool) {
	if end, plain := plainExtent(s); plain {
		if re == x.schemed && end <= strings.Index(s, "://")+3 {
			return 0, 0, false
		}
		return 0, end, true
	}
	loc := re.FindStringIndex(s)
	if loc == nil {
		return 0, 0, false
	}
	return loc[0], loc[1], true
}

// URL characters (ASCII) as xurls classifies them: midChars may appear
// anywhere in a URL, endChars may also end one.
const (
	midChars = `/?#\` + `abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~` + `%` + `!$&'*+,;=` + `:@`
	endChars = `/#` + `abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~` + `%` + `$&+=`
)

var midSet, endSet = charSet(midChars), charSet(endChars)

func charSet(chars string) (set [256]bool) {
	for i := 0; i < len(chars); i++ {
		set[chars[i]] = true
	}
	return set
}

// plainExtent reports whether s holds only midChars, at least one of them
// an endChar, and if so the end of its last endChar.
func plainExtent(s string) (end int, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !midSet[c] {
			return 0, false
		}
		if endSet[c] {
			end = i + 1
		}
	}
	return end, end > 0
}

// indexScheme returns the index of the next "http://" or "https://" (any
// case) in s at or after from, or -1.
func indexScheme(s string, from int) int {
	for from < len(s) {
		k := strings.Index(s[from:], "://")
		if k < 0 {
			return -1
		}
		k += from
		if k >= 5 && strings.EqualFold(s[k-5:k], "https") {
			return k - 5
		}
		if k >= 4 && strings.EqualFold(s[k-4:k], "http") {
			return k - 4
		}
		from = k + 3
	}
	return -1
}

// schemedLink adds u (an xurls match starting with http:// or https://)
// if its host is valid, lower-casing scheme and host.
func (s *scan) schemedLink(u string) {
	sep := strings.Index(u, "://")
	scheme, rest := u[:sep], u[sep+3:]
	// The authority ends where the path, query or fragment begins; like
	// browsers, treat a backslash as a path separator.
	authEnd := strings.IndexAny(rest, `/?#\`)
	if authEnd < 0 {
		authEnd = len(rest)
	}
	auth := rest[:authEnd]
	hostStart := strings.LastIndexByte(auth, '@') + 1
	host, ok := validHost(auth[hostStart:])
	if !ok {
		return
	}
	lower := strings.ToLower(host)
	if lscheme := strings.ToLower(scheme); lscheme != scheme || lower != host {
		u = lscheme + "://" + auth[:hostStart] + strings.ToLower(auth[hostStart:]) + rest[authEnd:]
	}
	s.add(Found{URL: u, Kind: KindURL, Host: lower, Platform: s.platform(lower)})
}

// validHost splits "host[:port]" and checks both; an IPv6 host keeps its
// brackets.
func validHost(hp string) (string, bool) {
	host, port := hp, ""
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", false
		}
		if _, err := netip.ParseAddr(hp[1:end]); err != nil {
			return "", false
		}
		host, port = hp[:end+1], hp[end+1:]
		if port != "" && port[0] != ':' {
			return "", false
		}
	} else if i := strings.IndexByte(hp, ':'); i >= 0 {
		host, port = hp[:i], hp[i:]
		if !hostChars(host) {
			return "", false
		}
	} else if !hostChars(host) {
		return "", false
	}
	if port != "" {
		// As browsers: digits up to 65535; "host:" is the default port.
		port = port[1:]
		if n, err := strconv.Atoi(port); port != "" && (err != nil || n > 65535 || strings.Trim(port, "0123456789") != "") {
			return "", false
		}
	}
	return host, true
}

// hostChars reports whether h looks like a DNS name or IPv4 address.
func hostChars(h string) bool {
	if h == "" || h[0] == '.' || h[0] == '-' {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHostByte(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

// bareLinks adds the scheme-less links of registry domains and of "www."
// hosts (wwwHost) in sp[a:b].
func (s *scan) bareLinks(sp string, a, b int) {
	for i := a; i < b && !s.truncated; {
		if !isAlnum(sp[i]) || (i > 0 && !startsWord(sp[i-1])) {
			i++
			continue
		}
		j := i
		for j < b && isHostByte(sp[j]) {
			j++
		}
		host := strings.TrimRight(sp[i:j], ".-")
		if strings.IndexByte(host, '.') < 0 || !hostChars(host) {
			i = j
			continue
		}
		lower := strings.ToLower(host)
		pl := s.platform(lower)
		if pl == "" && !wwwHost(lower) {
			i = j
			continue
		}
		// xurls decides where the link ends (path, query, trailing punctuation).
		start, end, ok := s.x.find(s.x.bare, sp[i:b])
		if !ok || start != 0 || end < len(host) {
			i = j
			continue
		}
		u := sp[i : i+end]
		authEnd := strings.IndexAny(u, `/?#\`)
		if authEnd < 0 {
			authEnd = len(u)
		}
		if strings.IndexByte(u[:authEnd], '@') >= 0 {
			// host@other: a browser opens other, with host as a user name.
			i = j
			continue
		}
		if rest := u[len(host):]; strings.HasPrefix(rest, ":") {
			// host:port — keep only a valid port.
			portEnd := strings.IndexAny(rest, "/?#")
			if portEnd < 0 {
				portEnd = len(rest)
			}
			if _, ok := validHost(u[:len(host)+portEnd]); !ok {
				i = j
				continue
			}
		}
		s.add(Found{URL: "https://" + lower + u[len(host):], Kind: KindURL, Host: lower, Platform: pl})
		i += end
	}
}

// wwwHost reports whether host (lower-case) is "www." followed by a
// registrable domain under a public suffix of the list's ICANN section, or
// by such a suffix of two labels or more, which government and school
// portals use: "www.mybrand.com" and "www.gov.cn", but not "www.com",
// "www.example.invalid" (a TLD the list does not hold) or
// "www.x.github.io" (a suffix of its private section).
func wwwHost(host string) bool {
	rest, ok := strings.CutPrefix(host, "www.")
	if !ok || rest == "" || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") || strings.Contains(rest, "..") {
		return false
	}
	suffix, icann := publicsuffix.PublicSuffix(rest)
	if !icann {
		return false
	}
	if suffix == rest {
		return strings.Contains(rest, ".") // www.gov.cn, not www.com
	}
	_, err := publicsuffix.EffectiveTLDPlusOne(rest)
	return err == nil
}

// startsWord reports whether a host may begin right after byte c: not
// inside another word, path, e-mail address or number.
func startsWord(c byte) bool {
	return !isHostByte(c) && c != '@' && c != '/' && c != ':' && c != '_' && c != '%' && c != '\\'
}

func (s *scan) platform(host string) string {
	if i := s.p.platformOf(strings.TrimSuffix(host, ".")); i >= 0 {
		return s.p.platforms[i].ID
	}
	return ""
}
