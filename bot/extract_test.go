package bot

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func TestExtract(t *testing.T) {
	p, x := DefaultPolicy(), NewExtractor()
	for _, tc := range []struct {
		name, text string
		want       []string // "kind platform url"
	}{
		{"none", "今天天气不错，我们去吃饭吧。", nil},
		{"chinese around, fullwidth comma", "看这个https://item.jd.com/100012043978.html，很便宜",
			[]string{"url jd https://item.jd.com/100012043978.html"}},
		{"fullwidth punctuation", "链接：https://m.tb.cn/h.abc。然后http://example.com/x！还有https://v.douyin.com/iRNBho6u/）「https://u.jd.com/Ab1」",
			[]string{"url taobao https://m.tb.cn/h.abc", "url  http://example.com/x", "url douyin https://v.douyin.com/iRNBho6u/", "url jd https://u.jd.com/Ab1"}},
		{"scheme-less known domain", "去taobao.com/x看看，或者 detail.tmall.com/item.htm?id=123 吧",
			[]string{"url taobao https://taobao.com/x", "url tmall https://detail.tmall.com/item.htm?id=123"}},
		{"non-ASCII ends an address; percent-encoded and punycode run on (docs/protocol.md)",
			"https://s.taobao.com/search?q=手机&sort=sale https://s.taobao.com/search?q=%E6%89%8B%E6%9C%BA&sort=sale https://例子.中国/ https://xn--fsqu00a.xn--fiqs8s/",
			[]string{"url taobao https://s.taobao.com/search?q=", "url taobao https://s.taobao.com/search?q=%E6%89%8B%E6%9C%BA&sort=sale", "url  https://xn--fsqu00a.xn--fiqs8s/"}},
		{"scheme-less unknown domain is not a link", "see example.com/x and file.txt and v1.2.3", nil},
		{"scheme-less www. address", "看www.mybrand.com/sale，还有 www.kuaishou.com/short-video/123。和(www.example.org/a_(b)) www.example.co.uk/x?y=1. www.example.net! www.xn--fsqu00a.xn--fiqs8s/",
			[]string{"url  https://www.mybrand.com/sale", "url  https://www.kuaishou.com/short-video/123", "url  https://www.example.org/a_(b)", "url  https://www.example.co.uk/x?y=1", "url  https://www.example.net", "url  https://www.xn--fsqu00a.xn--fiqs8s/"}},
		{"www. address ends at the first non-ASCII character", "www.mybrand.com/sale打折 www.example.com/s?q=手机",
			[]string{"url  https://www.mybrand.com/sale", "url  https://www.example.com/s?q="}},
		{"upper case www. address", "WWW.Example.COM/x and Www.TaoBao.com/y",
			[]string{"url  https://www.example.com/x", "url taobao https://www.taobao.com/y"}},
		{"www. address ports", "www.example.com:8080/x www.example.com:99999/y",
			[]string{"url  https://www.example.com:8080/x"}},
		{"www. portal on a two-label suffix", "www.gov.cn/zhengce/ 和 www.gov.uk",
			[]string{"url  https://www.gov.cn/zhengce/", "url  https://www.gov.uk"}},
		{"not www. addresses", "file.txt main.go v1.2.3 e.g. www. www www.foo www.com www.cn www.example.invalid www.example.test www.example.local www.example.internal www.x.github.io www.例子.中国 wwwx.example.com a.www.example.com/x 1www.example.com www..example.com", nil},
		{"e-mail and userinfo are not www. addresses", "写信给 me@www.example.com 吧 or www.example.com@evil.example/x or /www.example.com or :www.example.com", nil},
		{"upper case scheme and host", "HTTPS://V.DOUYIN.COM/iRNBho6u/ and Http://Item.JD.com/1.html",
			[]string{"url douyin https://v.douyin.com/iRNBho6u/", "url jd http://item.jd.com/1.html"}},
		{"ports and queries", "http://example.com:8080/a?b=c&d=e#f and jd.com:443/x",
			[]string{"url  http://example.com:8080/a?b=c&d=e#f", "url jd https://jd.com:443/x"}},
		{"bad port", "http://example.com:99999999/ http://example.com:x/ https://taobao.com:99999/ https://jd.com:65536/a", nil},
		{"empty and highest port", "https://taobao.com:/x https://jd.com:65535/a",
			[]string{"url taobao https://taobao.com:/x", "url jd https://jd.com:65535/a"}},
		{"short links", "https://3.cn/10-abcdE 和 https://e.tb.cn/h.g5 和 tburl.cn/abc",
			[]string{"url jd https://3.cn/10-abcdE", "url taobao https://e.tb.cn/h.g5", "url taobao https://tburl.cn/abc"}},
		{"duplicates", "https://jd.com/a https://jd.com/a HTTPS://JD.COM/a jd.com/a",
			[]string{"url jd https://jd.com/a"}},
		{"only web links", "javascript:alert(1) data:text/html,<b> ftp://example.com/f mailto:a@b.com file:///etc/passwd", nil},
		{"javascript inside text", "javascript://example.com/%0Aalert(1)", nil},
		{"e-mail is not a link", "写信给 someone@taobao.com 吧", nil},
		{"parentheses", "(see https://example.com/a_(b)) and [https://jd.com/x].",
			[]string{"url  https://example.com/a_(b)", "url jd https://jd.com/x"}},
		{"userinfo decides by the real host", "https://jd.com@evil.example/x",
			[]string{"url  https://jd.com@evil.example/x"}},
		{"scheme-less userinfo is not the platform's", "see taobao.com@evil.example/x and jd.com;@evil.example and tmall.com:443@evil.example", nil},
		{"ipv6", "http://[2001:db8::1]:8080/x", []string{"url  http://[2001:db8::1]:8080/x"}},
		{"taobao token", "复制这段描述￥AbCd1234￥后到淘宝 and ¥XyZ98765¥", []string{"token taobao ￥AbCd1234￥", "token taobao ¥XyZ98765¥"}},
		{"not tokens", "价格￥99 元，￥ab￥ ￥AbCd1234", nil},
		{"no space between links", "https://jd.com/a,https://jd.com/b", []string{"url jd https://jd.com/a,https://jd.com/b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found, truncated := x.Extract(p, tc.text)
			var got []string
			for _, f := range found {
				got = append(got, f.Kind+" "+f.Platform+" "+f.URL)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") || truncated {
				t.Errorf("Extract(%q) =\n%s\nwant\n%s", tc.text, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestExtractCap(t *testing.T) {
	p, x := DefaultPolicy(), NewExtractor()
	var b strings.Builder
	for i := range MaxLinks + 5 {
		b.WriteString("https://jd.com/" + strings.Repeat("a", i+1) + "，")
	}
	found, truncated := x.Extract(p, b.String())
	if len(found) != MaxLinks || !truncated {
		t.Errorf("found %d links, truncated %v; want %d, true", len(found), truncated, MaxLinks)
	}
	found, truncated = x.Extract(p, strings.Repeat("https://jd.com/same ", 100))
	if len(found) != 1 || truncated {
		t.Errorf("duplicates: found %d, truncated %v", len(found), truncated)
	}
	res := New(nil, nil).Decide(context.Background(), b.String(), Group, "")
	if len(res.Links) != MaxLinks || !res.Truncated || res.Era != "group-ecommerce" {
		t.Errorf("Decide: %d links, truncated %v, era %q", len(res.Links), res.Truncated, res.Era)
	}
}

// TestGolden decides the real-looking share texts under testdata/share in
// every era and chat kind, and compares with the golden JSON beside them.
// Run `go test ./bot -run TestGolden -update` to rewrite the files.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/share/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no share texts: %v", err)
	}
	b := New(nil, nil)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var results []Result
			for _, era := range b.Policy().Eras() {
				for _, c := range []Chat{Direct, Group} {
					results = append(results, b.Decide(context.Background(), string(text), c, era.ID))
				}
			}
			got, err := json.MarshalIndent(results, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(file, ".txt") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from the decision; run with -update if the change is intended\ngot:\n%s", golden, got)
			}
		})
	}
}

// FuzzExtract checks that extraction never panics and only returns what it
// promises: at most MaxLinks distinct links, each an http(s) URL whose host
// is in the input, or a ￥…￥ token that is.
func FuzzExtract(f *testing.F) {
	for _, s := range []string{
		"【淘宝】https://m.tb.cn/h.5FgH2Jk?tk=AbCd1234 CZ0001",
		"taobao.com/x，jd.com:80/y",
		"WWW.Example.COM/x，me@www.example.com www.foo",
		"javascript:alert(1)",
		"￥AbCd1234￥",
		"HTTP://[::1]:80/",
	} {
		f.Add(s)
	}
	p, x := DefaultPolicy(), NewExtractor()
	f.Fuzz(func(t *testing.T, text string) {
		found, truncated := x.Extract(p, text)
		if len(found) > MaxLinks || (truncated && len(found) != MaxLinks) {
			t.Fatalf("%d links, truncated %v", len(found), truncated)
		}
		// The fast path of find must agree with xurls' expressions.
		for _, tc := range []struct {
			re *regexp.Regexp
			s  string
		}{{x.bare, text}, {x.schemed, "http://" + text}} {
			start, end, ok := x.find(tc.re, tc.s)
			loc := tc.re.FindStringIndex(tc.s)
			if ok != (loc != nil) || (ok && (start != loc[0] || end != loc[1])) {
				t.Errorf("find(%q) = %d, %d, %v; xurls: %v", tc.s, start, end, ok, loc)
			}
		}
		lower := strings.ToLower(text)
		seen := map[string]bool{}
		for _, l := range found {
			if seen[l.URL] {
				t.Errorf("duplicate %q", l.URL)
			}
			seen[l.URL] = true
			switch l.Kind {
			case KindURL:
				if !strings.HasPrefix(l.URL, "http://") && !strings.HasPrefix(l.URL, "https://") {
					t.Errorf("not an http(s) URL: %q", l.URL)
				}
				if l.Host == "" || !strings.Contains(lower, l.Host) {
					t.Errorf("host %q of %q is not in the input", l.Host, l.URL)
				}
				if !utf8.ValidString(l.URL) || strings.ContainsAny(l.URL, " \t\r\n") {
					t.Errorf("URL %q has invalid bytes or white space", l.URL)
				}
			case KindToken:
				if !strings.Contains(text, l.URL) || l.Platform != "taobao" {
					t.Errorf("token %q (%s) not in the input", l.URL, l.Platform)
				}
			default:
				t.Errorf("kind %q", l.Kind)
			}
			if l.Platform != "" {
				if _, ok := p.Platform(l.Platform); !ok {
					t.Errorf("unknown platform %q", l.Platform)
				}
			}
		}
	})
}

// FuzzLoadPolicy checks that loading never panics, and that whatever it
// accepts decides every era, chat and platform.
func FuzzLoadPolicy(f *testing.F) {
	f.Add(defaultPolicyYAML)
	f.Add([]byte("version: 1\nrules: [{id: x}]\n"))
	f.Add([]byte("a: &a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := LoadPolicy("fuzz.yaml", data)
		// Validation is deterministic: loading again gives the same answer.
		p2, err2 := LoadPolicy("fuzz.yaml", data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("two loads disagree: %v / %v", err, err2)
		}
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml:") {
					t.Errorf("error line without the file name: %q", line)
				}
			}
			return
		}
		if !reflect.DeepEqual(p.table, p2.table) {
			t.Error("two loads built different decision tables")
		}
		for _, e := range p.Eras() {
			if _, err := p.ResolveEra(e.ID); err != nil {
				t.Error(err)
			}
			for _, c := range []Chat{Direct, Group} {
				for _, pl := range append(p.Platforms(), Platform{}) {
					l := p.Decide(Found{Platform: pl.ID}, c, e.ID)
					if l.Rule == "" || (l.Outcome != Blocked && l.Outcome != Hyperlink && l.Outcome != CardView) {
						t.Errorf("undecided %s/%s/%s: %+v", e.ID, c, pl.ID, l)
					}
				}
			}
		}
	})
}
