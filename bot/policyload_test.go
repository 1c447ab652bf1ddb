package bot

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// lineOf returns the 1-based line of the first occurrence of sub in s.
func lineOf(t *testing.T, s, sub string) int {
	t.Helper()
	i := strings.Index(s, sub)
	if i < 0 {
		t.Fatalf("%q not in policy", sub)
	}
	return strings.Count(s[:i], "\n") + 1
}

func TestLoadPolicyErrors(t *testing.T) {
	base := string(defaultPolicyYAML)
	for _, tc := range []struct {
		name     string
		old, new string
		at       string // text on the line the error must name
		msg      string
	}{
		{"unknown platform", "match: {platform: [taobao, tmall]}", "match: {platform: [taobao, tmal]}",
			"match: {platform: [taobao, tmal]}", `unknown platform "tmal"`},
		{"unknown era", "eras: [open-api]", "eras: [open-apy]", "eras: [open-apy]", `unknown era "open-apy"`},
		{"unknown outcome", "outcome: blocked", "outcome: hidden", "outcome: hidden", `unknown outcome "hidden"`},
		{"duplicate rule id", "id: direct-open\n    since", "id: taobao-open\n    since", "id: taobao-open\n    since: \"2021-09-17\"", `duplicate id "taobao-open"`},
		{"duplicate platform id", "id: tmall", "id: taobao", "id: taobao\n    name: Tmall", `duplicate id "taobao"`},
		{"overlapping domain", "domains: [tmall.com]", "domains: [tmall.com, detail.taobao.com]",
			"domains: [tmall.com, detail.taobao.com]", `overlaps taobao.com of platform "taobao"`},
		{"overlap across platforms of Tencent's qq.com", "domains: [pinduoduo.com, yangkeduo.com]", "domains: [pinduoduo.com, weixin.qq.com]",
			"domains: [qq.com, v.qq.com, weixin.qq.com]", `domain "weixin.qq.com" overlaps qq.com of platform "pinduoduo"`},
		{"public suffix domain", "domains: [ixigua.com]", "domains: [com.cn]", "domains: [com.cn]", "public suffix"},
		{"missing Chinese reason", "    reason_zh: \"不在平台名单中的网站：在任何时期都是普通链接。\"\n", "",
			"id: other-site", "missing reason_zh"},
		{"empty English reason", `reason: "A site outside the platform registry: a plain hyperlink in every era."`, `reason: ""`,
			`reason: ""`, "empty reason"},
		{"unknown field", "    login_required: true\n    reason: \"{platform} links", "    login_requird: true\n    reason: \"{platform} links",
			"login_requird", `unknown field "login_requird"`},
		{"unknown owner", "owner: bytedance\n    category: news", "owner: bytedanse\n    category: news", "owner: bytedanse", `unknown owner "bytedanse"`},
		{"bad since", `since: "2021-09-17"`, `since: "2021-09-31"`, `since: "2021-09-31"`, "not a date"},
		{"eras out of order", `from: "2022-01-27"`, `from: "2021-01-27"`, `from: "2021-01-27"`, "not after the previous era"},
		{"unknown default era", "default_era: group-ecommerce", "default_era: gruop", "default_era: gruop", `unknown era "gruop"`},
		{"default era not an id", "default_era: group-ecommerce", "default_era: [walled, open-api]", "default_era: [walled", "default_era must be an era's id"},
		{"yes for true", "    api: false\n    tokens: true", "    api: yes\n    tokens: true", "api: yes", "api must be true or false"},
		{"null for false", "    api: false\n    tokens: true", "    api: ~\n    tokens: true", "api: ~", "api must be true or false"},
		{"login_required on a block", "outcome: blocked", "outcome: blocked\n    login_required: true", "login_required: true\n    reason: \"{platform} belongs", "login_required only applies"},
		{"unknown placeholder", "{platform} belongs to {owner}", "{platfrom} belongs to {owner}", "{platfrom} belongs", "unknown placeholder {platfrom}"},
		{"undecided links", "  - id: other-site\n    match: {known: false}", "  - id: other-site\n    match: {known: false, chat: [direct]}",
			"rules:\n", "no rule decides this site links in group chats of era walled"},
		{"missing Chinese notice", `  zh: "如需浏览，请长按网址复制后使用浏览器访问"` + "\n", "", "  en: ", "missing zh"},
		{"empty condition", "match: {owner: [alibaba, bytedance]}\n    outcome: blocked", "match: {owner: []}\n    outcome: blocked",
			"match: {owner: []}", "owner is empty"},
		{"yaml syntax", "  - id: tmall\n", "  - id: tmall\n  bad\n", "  bad", ""},
		{"duplicate key", "outcome: blocked", "outcome: blocked\n    outcome: card", "outcome: card\n    reason: \"{platform} belongs", "outcome given twice"},
		{"duplicate top-level key", "default_era: group-ecommerce", "default_era: group-ecommerce\ndefault_era: walled", "default_era: walled", "default_era given twice"},
		{"second document", "rules:\n", "---\nrules: []\n---\nrules:\n", "---\nrules: []", "a second YAML document"},
		{"empty rule", "rules:\n", "rules:\n  - {}\n", "  - {}", "rule: missing id"},
		{"second token platform", "    owner: alibaba\n    category: ecommerce\n    api: false\n    domains: [tmall.com]",
			"    owner: alibaba\n    category: ecommerce\n    api: false\n    tokens: true\n    domains: [tmall.com]", "tokens: true\n    domains: [tmall.com]", "share tokens already belong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Count(base, tc.old) != 1 {
				t.Fatalf("%q occurs %d times in the default policy", tc.old, strings.Count(base, tc.old))
			}
			src := strings.Replace(base, tc.old, tc.new, 1)
			_, err := LoadPolicy("p.yaml", []byte(src))
			if err == nil {
				t.Fatal("LoadPolicy accepted the policy")
			}
			prefix := "p.yaml:" + strconv.Itoa(lineOf(t, src, tc.at)) + ": "
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, prefix) && strings.Contains(line, tc.msg) {
					return
				}
			}
			t.Errorf("error does not contain %q…%q:\n%v", prefix, tc.msg, err)
		})
	}
}

func TestLoadPolicyRejectsGarbage(t *testing.T) {
	for name, src := range map[string]string{
		"empty":     "",
		"scalar":    "hello",
		"list":      "- 1\n- 2",
		"no rules":  "version: 1\n",
		"version 2": strings.Replace(string(defaultPolicyYAML), "version: 1", "version: 2", 1),
	} {
		if _, err := LoadPolicy(name, []byte(src)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), name+":") {
			t.Errorf("%s: error %q does not start with the name", name, err)
		}
	}
	big := make([]byte, maxPolicyBytes+1)
	if _, err := LoadPolicy("big", big); err == nil {
		t.Error("accepted an oversized policy")
	}
}

func TestLoadPolicyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custom.yaml")
	// A product team's own site, previewed through OpenGraph, as a policy
	// file can declare it.
	src := strings.Replace(string(defaultPolicyYAML), "\neras:", `
  - id: acme
    name: Acme
    name_zh: 极致
    owner: tencent
    category: first-party
    api: true
    card: opengraph
    domains: [acme.example]

eras:`, 1)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPolicyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := p.Counts(); n != 12 {
		t.Errorf("platforms = %d, want 12", n)
	}
	if p.Name() != path {
		t.Errorf("Name = %q", p.Name())
	}
	if _, err := LoadPolicyFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("loaded a missing file")
	}
}
