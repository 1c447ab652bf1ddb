package web

import (
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// The page runs under `script-src 'self'; style-src 'self'`: anything inline
// would be refused by the browser, so it must not exist.
func TestIndexHasNothingInline(t *testing.T) {
	data, err := fs.ReadFile(Files(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	var modules int
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s %s=…>: inline event handler", n.Data, a.Key)
				}
				if a.Key == "style" {
					t.Errorf("<%s style=…>: inline style", n.Data)
				}
			}
			switch n.Data {
			case "script":
				if attrs["src"] == "" {
					t.Error("inline <script>")
				}
				if attrs["type"] == "module" {
					modules++
				}
			case "style":
				t.Error("inline <style>")
			case "link", "img":
				for _, k := range []string{"href", "src"} {
					if v := attrs[k]; strings.Contains(v, "//") {
						t.Errorf("<%s %s=%q>: the page must work offline, no outside resources", n.Data, k, v)
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if modules != 1 {
		t.Errorf("index.html loads %d module scripts, want 1 (app.js)", modules)
	}
}

var (
	importRe = regexp.MustCompile(`(?m)^\s*import\s[^;]*?from\s+"([^"]+)"`)
	// Sinks that turn strings into markup or code. The page builds all DOM
	// with createElement/textContent (dom.js), so none may appear.
	sinkRe = regexp.MustCompile(`\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setTimeout\(\s*["'\x60]|createContextualFragment`)
)

func jsFiles(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".js") {
			return err
		}
		b, err := fs.ReadFile(Files(), path)
		out[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no JavaScript files embedded")
	}
	return out
}

func TestModulesResolveAndUseNoHTMLSinks(t *testing.T) {
	for name, src := range jsFiles(t) {
		for _, m := range importRe.FindAllStringSubmatch(src, -1) {
			target := strings.TrimPrefix(m[1], "./")
			if strings.Contains(m[1], "//") || !strings.HasPrefix(m[1], "./") {
				t.Errorf("%s imports %q: only local modules", name, m[1])
				continue
			}
			if _, err := fs.Stat(Files(), target); err != nil {
				t.Errorf("%s imports %q, which is not embedded", name, m[1])
			}
		}
		for i, line := range strings.Split(src, "\n") {
			if loc := sinkRe.FindString(line); loc != "" && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				t.Errorf("%s:%d uses %q: build elements with dom.js instead", name, i+1, loc)
			}
		}
	}
}

var (
	// A key line in the i18n table: `    name: "…",`.
	keyRe = regexp.MustCompile(`(?m)^    (\w+):\s`)
	// Uses: t("key") or t(`outcomeShort_${…}`) prefixes.
	useRe    = regexp.MustCompile(`\bt\("(\w+)"`)
	prefixRe = regexp.MustCompile("\\bt\\(`(\\w+)\\$\\{")
)

// Every UI string exists in both languages, and every string the code asks
// for exists.
func TestI18nTablesComplete(t *testing.T) {
	js := jsFiles(t)
	src := js["i18n.js"]
	en, zh, ok := strings.Cut(src, "\n  zh: {")
	if !ok {
		t.Fatal("i18n.js: no zh table")
	}
	zh, _, _ = strings.Cut(zh, "\n  },\n")
	keys := func(s string) []string {
		var out []string
		for _, m := range keyRe.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		slices.Sort(out)
		return out
	}
	enKeys, zhKeys := keys(en), keys(zh)
	if len(enKeys) < 50 {
		t.Fatalf("found only %d English strings; is the table format unchanged?", len(enKeys))
	}
	for _, k := range enKeys {
		if _, found := slices.BinarySearch(zhKeys, k); !found {
			t.Errorf("%q has no Chinese string", k)
		}
	}
	for _, k := range zhKeys {
		if _, found := slices.BinarySearch(enKeys, k); !found {
			t.Errorf("%q has no English string", k)
		}
	}
	for name, s := range js {
		for _, m := range useRe.FindAllStringSubmatch(s, -1) {
			if _, found := slices.BinarySearch(enKeys, m[1]); !found {
				t.Errorf("%s asks for the string %q, which the table lacks", name, m[1])
			}
		}
		for _, m := range prefixRe.FindAllStringSubmatch(s, -1) {
			for _, o := range []string{"blocked", "hyperlink", "card"} {
				if _, found := slices.BinarySearch(enKeys, m[1]+o); !found {
					t.Errorf("%s asks for the string %q, which the table lacks", name, m[1]+o)
				}
			}
		}
	}
}

// The demo catalogue's pictures are served from here: every path the
// catalogue names must exist, or its cards would fall back to the tile.
func TestCataloguePicturesExist(t *testing.T) {
	data, err := os.ReadFile("../bot/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	paths := regexp.MustCompile(`(?m)^\s*image:\s*"(/[^"]*)"`).FindAllSubmatch(data, -1)
	if len(paths) == 0 {
		t.Fatal("the catalogue names no picture of its own")
	}
	for _, m := range paths {
		name := strings.TrimPrefix(string(m[1]), "/")
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Errorf("catalogue picture %s: %v", m[1], err)
			continue
		}
		if !strings.HasPrefix(string(b), "<svg ") || strings.Contains(string(b), "<script") {
			t.Errorf("catalogue picture %s is not a plain SVG", m[1])
		}
	}
}
