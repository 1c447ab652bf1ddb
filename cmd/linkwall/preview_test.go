package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/linkwall/linkwall/bot"
)

const previewTaobaoShare = "【淘宝】https://m.tb.cn/h.5FgH2Jk?tk=AbCd1234 CZ0001 「夏季新款连衣裙」点击链接直接打开"

func runPreviewCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPreviewJSONPerEra(t *testing.T) {
	for _, tc := range []struct {
		chat, era, outcome, rule string
		login                    bool
	}{
		{"group", "walled", "blocked", "rival-blocked", false},
		{"direct", "2021-10-01", "hyperlink", "direct-open", true},
		{"group", "2021-10-01", "blocked", "rival-blocked", false},
		{"group", "", "hyperlink", "group-ecommerce-trial", true}, // default era
		{"group", "taobao-open", "hyperlink", "taobao-open", true},
		{"direct", "open-api", "card", "open-api-card", false},
	} {
		args := []string{"preview", "--json", "--chat", tc.chat}
		if tc.era != "" {
			args = append(args, "--era", tc.era)
		}
		code, out, errOut := runPreviewCLI(t, append(args, previewTaobaoShare)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var res struct {
			Links []map[string]any `json:"links"`
			Era   string           `json:"era"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("%v: output is not one JSON line", args)
		}
		if len(res.Links) != 1 {
			t.Fatalf("%v: links %v", args, res.Links)
		}
		l := res.Links[0]
		if l["url"] != "https://m.tb.cn/h.5FgH2Jk?tk=AbCd1234" || l["kind"] != "url" || l["platform"] != "taobao" ||
			l["owner"] != "alibaba" || l["category"] != "ecommerce" || l["outcome"] != tc.outcome || l["rule"] != tc.rule ||
			l["login_required"] != tc.login || l["reason"] == "" || l["reason_zh"] == "" {
			t.Errorf("%v: link %v", args, l)
		}
		if _, ok := l["card"]; !ok {
			t.Errorf("%v: no card field", args)
		}
	}
}

func TestPreviewTable(t *testing.T) {
	code, out, _ := runPreviewCLI(t, "preview", "--era", "walled", previewTaobaoShare, "和", "https://item.jd.com/100012043978.html")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"era walled", "group chat",
		"1  blocked  taobao    rival-blocked  https://m.tb.cn/h.5FgH2Jk?tk=AbCd1234",
		"2  card     jd        api-card       https://item.jd.com/100012043978.html",
		"如需浏览，请长按网址复制后使用浏览器访问",
		"card: 飞天茅台 53度 500ml",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Flags may follow the text.
	code, out, _ = runPreviewCLI(t, "preview", "jd.com/x", "--json")
	if code != 0 || !strings.HasPrefix(out, `{"links":[{"url":"https://jd.com/x"`) {
		t.Errorf("trailing flag: exit %d, %s", code, out)
	}
	code, out, _ = runPreviewCLI(t, "preview", "--", "--json")
	if code != 0 || !strings.Contains(out, "no links found") {
		t.Errorf("text after --: exit %d, %s", code, out)
	}
}

func TestPreviewBadUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"preview", "--era", "nope", "x"}, `unknown era "nope": use one of walled, direct-open`},
		{[]string{"preview", "--chat", "channel", "x"}, `unknown chat kind "channel"`},
		{[]string{"preview", "--bogus", "x"}, "flag provided but not defined: -bogus"},
		{[]string{"preview"}, "no text given"},
		{[]string{"policy"}, "usage: linkwall policy check FILE"},
		{[]string{"policy", "lint", "x"}, "usage: linkwall policy check FILE"},
	} {
		code, out, errOut := runPreviewCLI(t, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.msg)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, defaultPolicyYAML(t), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runPreviewCLI(t, "policy", "check", good)
	if code != 0 || out != good+": ok (11 platforms, 5 eras, 8 rules)\n" {
		t.Errorf("good policy: exit %d, %q", code, out)
	}

	bad := filepath.Join(dir, "bad.yaml")
	src := strings.Replace(string(defaultPolicyYAML(t)), "outcome: blocked", "outcome: hidden", 1)
	if err := os.WriteFile(bad, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(src[:strings.Index(src, "outcome: hidden")], "\n") + 1
	code, out, errOut := runPreviewCLI(t, "policy", "check", bad)
	want := bad + ":" + strconv.Itoa(line) + `: rule rival-blocked: unknown outcome "hidden"`
	if code != 1 || out != "" || !strings.Contains(errOut, want) {
		t.Errorf("bad policy: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}

	// preview --policy uses the file, and reports a bad one.
	if code, _, errOut := runPreviewCLI(t, "preview", "--policy", bad, "x"); code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("preview with a bad policy: exit %d, %q", code, errOut)
	}
	if code, _, _ := runPreviewCLI(t, "preview", "--policy", good, "x"); code != 0 {
		t.Errorf("preview with a good policy: exit %d", code)
	}
	if code, _, _ := runPreviewCLI(t, "policy", "check", filepath.Join(dir, "missing.yaml")); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}
}

// defaultPolicyYAML returns the YAML of the embedded default policy, as a
// user would start from it.
func defaultPolicyYAML(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("../../bot/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bot.LoadPolicy("policy.yaml", data); err != nil {
		t.Fatal(err)
	}
	return data
}
