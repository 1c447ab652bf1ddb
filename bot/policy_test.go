package bot

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if got, want := p.DefaultEra(), "group-ecommerce"; got != want {
		t.Errorf("DefaultEra = %q, want %q", got, want)
	}
	var ids []string
	for _, e := range p.Eras() {
		ids = append(ids, e.ID)
	}
	if got, want := strings.Join(ids, ","), "walled,direct-open,group-ecommerce,taobao-open,open-api"; got != want {
		t.Errorf("eras = %s, want %s", got, want)
	}
	if got, want := p.BlockedNotice("zh"), "如需浏览，请长按网址复制后使用浏览器访问"; got != want {
		t.Errorf("BlockedNotice(zh) = %q, want %q", got, want)
	}
	if p.BlockedNotice("en") == "" {
		t.Error("BlockedNotice(en) is empty")
	}
	platforms, eras, rules := p.Counts()
	if platforms != 11 || eras != 5 || rules != 8 {
		t.Errorf("Counts = %d, %d, %d", platforms, eras, rules)
	}
	// Platforms returns a copy: changing it must not change the policy.
	pl := p.Platforms()
	pl[0].Domains[0] = "changed.example"
	if p.Platforms()[0].Domains[0] == "changed.example" {
		t.Error("Platforms exposes the policy's own slices")
	}
}

// TestDecisionTable checks every platform × chat kind × era of the default
// policy against the history as the issue tells it, written out here
// independently of the policy file.
func TestDecisionTable(t *testing.T) {
	const (
		B = Blocked
		H = Hyperlink
		C = CardView
	)
	eras := []string{"walled", "direct-open", "group-ecommerce", "taobao-open", "open-api"}
	// Per platform: outcome in direct chats, then group chats, for each era in order.
	var (
		rivalShop  = [][2]Outcome{{B, B}, {H, B}, {H, H}, {H, H}, {C, C}}
		rivalOther = [][2]Outcome{{B, B}, {H, B}, {H, B}, {H, B}, {C, C}}
		withAPI    = [][2]Outcome{{C, C}, {C, C}, {C, C}, {C, C}, {C, C}}
		other      = [][2]Outcome{{H, H}, {H, H}, {H, H}, {H, H}, {H, H}}
	)
	want := map[string][][2]Outcome{
		"taobao": rivalShop, "tmall": rivalShop, "xianyu": rivalShop, "1688": rivalShop,
		"alipay": rivalOther, "douyin": rivalOther, "toutiao": rivalOther, "xigua": rivalOther,
		"jd": withAPI, "pinduoduo": withAPI, "tencent": withAPI,
		"": other,
	}
	p := DefaultPolicy()
	for _, pl := range p.Platforms() {
		if _, ok := want[pl.ID]; !ok {
			t.Errorf("platform %q has no expected outcomes in this test", pl.ID)
		}
	}
	for platform, outcomes := range want {
		for e, era := range eras {
			for c, chat := range []Chat{Direct, Group} {
				name := fmt.Sprintf("%s/%s/%s", cmpOr(platform, "other"), era, chat)
				t.Run(name, func(t *testing.T) {
					l := p.Decide(Found{URL: "https://x", Kind: KindURL, Platform: platform}, chat, era)
					if l.Outcome != outcomes[e][c] {
						t.Fatalf("outcome %s (rule %s), want %s", l.Outcome, l.Rule, outcomes[e][c])
					}
					if l.Platform != platform || l.Rule == "" || l.Reason == "" || l.ReasonZh == "" || l.Source == "" {
						t.Errorf("incomplete decision: %+v", l)
					}
					rival := platform != "" && outcomes[0][0] == B
					if loginRequired := rival && l.Outcome == H; l.LoginRequired != loginRequired {
						t.Errorf("LoginRequired = %v, want %v", l.LoginRequired, loginRequired)
					}
					if l.LoginRequired && !strings.Contains(l.Reason, "log in") {
						t.Errorf("reason of a login-required link does not say so: %q", l.Reason)
					}
					if strings.ContainsAny(l.Reason+l.ReasonZh, "{}") {
						t.Errorf("unexpanded placeholder: %q / %q", l.Reason, l.ReasonZh)
					}
				})
			}
		}
	}
}

func TestDecisionRulesAndDates(t *testing.T) {
	p := DefaultPolicy()
	for _, tc := range []struct {
		platform, era string
		chat          Chat
		rule, since   string
	}{
		{"taobao", "walled", Group, "rival-blocked", ""},
		{"douyin", "direct-open", Direct, "direct-open", "2021-09-17"},
		{"xianyu", "group-ecommerce", Group, "group-ecommerce-trial", "2021-11-29"},
		{"tmall", "taobao-open", Group, "taobao-open", "2022-01-27"},
		{"xianyu", "taobao-open", Group, "group-ecommerce-trial", "2021-11-29"},
		{"alipay", "open-api", Group, "open-api-card", ""},
		{"jd", "walled", Group, "api-card", ""},
		{"tencent", "walled", Direct, "first-party-card", ""},
		{"", "walled", Group, "other-site", ""},
		{"taobao", "no-such-era", Group, "group-ecommerce-trial", "2021-11-29"}, // default era
		{"douyin", "direct-open", Chat("bogus"), "rival-blocked", ""},           // unknown chat: group
	} {
		l := p.Decide(Found{Platform: tc.platform}, tc.chat, tc.era)
		if l.Rule != tc.rule || l.Since != tc.since {
			t.Errorf("%s/%s/%s: rule %q since %q, want %q since %q", tc.platform, tc.era, tc.chat, l.Rule, l.Since, tc.rule, tc.since)
		}
	}
}

func TestResolveEra(t *testing.T) {
	p := DefaultPolicy()
	for in, want := range map[string]string{
		"walled":     "walled",
		"open-api":   "open-api",
		"2019-01-01": "walled",
		"2021-09-16": "walled",
		"2021-09-17": "direct-open",
		"2021-10-01": "direct-open",
		"2021-11-28": "direct-open",
		"2021-11-29": "group-ecommerce",
		"2022-01-26": "group-ecommerce",
		"2022-01-27": "taobao-open",
		"2030-01-01": "taobao-open", // hypothetical eras are never "in force"
	} {
		e, err := p.ResolveEra(in)
		if err != nil || e.ID != want {
			t.Errorf("ResolveEra(%q) = %q, %v; want %q", in, e.ID, err, want)
		}
	}
	for _, bad := range []string{"", "later", "2021-13-01", "WALLED"} {
		_, err := p.ResolveEra(bad)
		if err == nil || !strings.Contains(err.Error(), "walled, direct-open, group-ecommerce, taobao-open, open-api") {
			t.Errorf("ResolveEra(%q) error = %v, want one listing the eras", bad, err)
		}
	}
}

// FuzzResolveEra feeds ResolveEra what a user may type after /era or send
// to PUT /rooms/{id}/era. An era id resolves to itself; a date to the last
// era that had begun by then and is not hypothetical; anything else is an
// error that names the eras.
func FuzzResolveEra(f *testing.F) {
	for _, s := range []string{"walled", "open-api", "2021-09-17", "2021-11-28", "2022-01-27",
		"1999-12-31", "2021-13-01", "2021-9-17", "2021-09-17T00:00:00Z", "WALLED", " walled", ""} {
		f.Add(s)
	}
	p := DefaultPolicy()
	eras := p.Eras()
	f.Fuzz(func(t *testing.T, in string) {
		e, err := p.ResolveEra(in)
		for _, known := range eras {
			if known.ID == in {
				if err != nil || e.ID != in {
					t.Fatalf("ResolveEra(%q) = %q, %v; want the era itself", in, e.ID, err)
				}
				return
			}
		}
		d, derr := time.Parse(dateLayout, in)
		if derr != nil {
			if err == nil || !strings.Contains(err.Error(), "unknown era") {
				t.Fatalf("ResolveEra(%q) = %q, %v; want an unknown-era error", in, e.ID, err)
			}
			return
		}
		date := d.Format(dateLayout)
		want := ""
		for _, known := range eras {
			if !known.Hypothetical && known.From <= date {
				want = known.ID // eras are in date order
			}
		}
		if want == "" {
			if err == nil {
				t.Fatalf("ResolveEra(%q) = %q before the timeline begins", in, e.ID)
			}
			return
		}
		if err != nil || e.ID != want || e.Hypothetical {
			t.Fatalf("ResolveEra(%q) = %q, %v; want %q", in, e.ID, err, want)
		}
	})
}

func TestPlatformOfHost(t *testing.T) {
	p := DefaultPolicy()
	for host, want := range map[string]string{
		"taobao.com": "taobao", "item.taobao.com": "taobao", "s.click.taobao.com": "taobao",
		"m.tb.cn": "taobao", "e.tb.cn": "taobao", "tb.cn": "taobao", "tburl.cn": "taobao",
		"detail.tmall.com": "tmall", "www.goofish.com": "xianyu", "detail.1688.com": "1688",
		"alipay.com": "alipay", "render.alipay.cn": "alipay",
		"v.douyin.com": "douyin", "www.iesdouyin.com": "douyin", "www.toutiao.com": "toutiao", "ixigua.com": "xigua",
		"item.jd.com": "jd", "u.jd.com": "jd", "3.cn": "jd", "jd.hk": "jd", "npcitem.jd.hk": "jd",
		"mobile.yangkeduo.com": "pinduoduo", "pinduoduo.com": "pinduoduo",
		"v.qq.com": "tencent", "weixin.qq.com": "tencent", "mp.weixin.qq.com": "tencent", "qq.com": "tencent",
		"example.com": "", "jd.com.evil.example": "", "nottaobao.com": "", "taobao.com.cn": "",
		"qq.com.cn": "", "cn": "", "com": "", "127.0.0.1": "",
	} {
		got := ""
		if i := p.platformOf(host); i >= 0 {
			got = p.platforms[i].ID
		}
		if got != want {
			t.Errorf("platformOf(%q) = %q, want %q", host, got, want)
		}
	}
}
