package bot

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

func TestDecideEmptyAndJSON(t *testing.T) {
	b := New(nil, nil)
	res := b.Decide(context.Background(), "没有链接", Direct, "walled")
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), `{"links":[],"truncated":false,"era":"walled","chat":"direct"}`; got != want {
		t.Errorf("JSON = %s, want %s", got, want)
	}
}

func TestCatalogueCards(t *testing.T) {
	b := New(nil, nil)
	res := b.Decide(context.Background(),
		"https://mobile.yangkeduo.com/goods.html?goods_id=235618943570 https://item.jd.com/999.html ￥AbCd1234￥", Group, "open-api")
	if len(res.Links) != 3 {
		t.Fatalf("links: %+v", res.Links)
	}
	for i, want := range []struct{ title, url string }{
		{"【百亿补贴】云南高原褚橙 5斤装 新鲜水果", "https://mobile.yangkeduo.com/goods.html?goods_id=235618943570"},
		{"JD.com 京东", "https://item.jd.com/999.html"}, // unknown item: the generic card
		{"Taobao 淘宝", "https://taobao.com/"},          // a token has no page of its own
	} {
		c := res.Links[i].Card
		if res.Links[i].Outcome != CardView || c == nil || c.Title != want.title || c.URL != want.url || c.SiteName == "" {
			t.Errorf("link %d: %+v card %+v", i, res.Links[i], c)
		}
	}
}

// TestSetPolicyConcurrent swaps policies while messages are decided; run
// with -race.
func TestSetPolicyConcurrent(t *testing.T) {
	strict, err := LoadPolicy("strict.yaml", []byte(strings.Replace(string(defaultPolicyYAML),
		"default_era: group-ecommerce", "default_era: walled", 1)))
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultPolicy()
	b := New(def, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				res := b.Decide(context.Background(), "【淘宝】https://m.tb.cn/h.x", Group, "")
				// Whichever policy a message started with decides it whole.
				if o := res.Links[0].Outcome; (res.Era == "walled") != (o == Blocked) {
					t.Errorf("era %s gave %s", res.Era, o)
					return
				}
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			b.SetPolicy(strict)
		} else {
			b.SetPolicy(def)
		}
	}
	wg.Wait()
	if b.Policy() != def {
		t.Error("Policy does not return the last policy set")
	}
}

func TestEmbeddedCatalogue(t *testing.T) {
	c, err := loadCatalogue(catalogueYAML)
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	for platform := range c.items {
		if pl, ok := p.Platform(platform); !ok || !pl.API {
			t.Errorf("catalogue items for %q, which is not an API platform of the default policy", platform)
		}
	}
	if _, err := loadCatalogue([]byte("items: [{platform: jd}]")); err == nil {
		t.Error("accepted an item without id and title")
	}
	if _, err := loadCatalogue([]byte("itemz: []")); err == nil {
		t.Error("accepted an unknown field")
	}
	for image, ok := range map[string]bool{
		"/cards/x.svg": true, "https://img.example/x.jpg": true, "": true,
		"//evil.example/x.svg": false, `/\evil.example/x.svg`: false, "javascript:alert(1)": false,
		"cards/x.svg": false, "ftp://example/x.png": false, "https:///x.png": false,
	} {
		_, err := loadCatalogue([]byte(`items: [{platform: jd, id: "1", title: t, site_name: s, image: "` + image + `"}]`))
		if (err == nil) != ok {
			t.Errorf("image %q: error %v, want accepted=%v", image, err, ok)
		}
	}
}

func TestItemID(t *testing.T) {
	for u, want := range map[string]string{
		"https://item.jd.com/100012043978.html":                "100012043978",
		"https://mobile.yangkeduo.com/goods.html?goods_id=123": "123",
		"https://detail.tmall.com/item.htm?id=42&spm=x":        "42",
		"https://v.qq.com/x/cover/mzc00200aaogpgh.html":        "mzc00200aaogpgh",
		"https://jd.com/": "",
		"https://jd.com":  "",
	} {
		if got := itemID(u); got != want {
			t.Errorf("itemID(%q) = %q, want %q", u, got, want)
		}
	}
}

// TestDecideDoesNotAllocate guards the 0-allocation decision the server's
// hot path relies on (its speed is measured by BenchmarkDecideLink).
func TestDecideDoesNotAllocate(t *testing.T) {
	p := DefaultPolicy()
	f := Found{URL: "https://v.douyin.com/x/", Kind: KindURL, Host: "v.douyin.com", Platform: "douyin"}
	if n := testing.AllocsPerRun(100, func() { p.Decide(f, Direct, "direct-open") }); n != 0 {
		t.Errorf("Decide allocates %.0f times per link", n)
	}
}
