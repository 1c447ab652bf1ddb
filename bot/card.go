package bot

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
)

//go:embed catalogue.yaml
var catalogueYAML []byte

// catalogue is the demo card source standing in for the card APIs of the
// platforms WeChat grants one.
type catalogue struct {
	items   map[string]map[string]Card // platform id → item id → card
	generic map[string]Card
}

type catalogueFile struct {
	Generic map[string]struct {
		Title         string `yaml:"title"`
		Description   string `yaml:"description"`
		DescriptionZh string `yaml:"description_zh"`
	} `yaml:"generic"`
	Items []struct {
		Platform      string `yaml:"platform"`
		ID            string `yaml:"id"`
		Title         string `yaml:"title"`
		Description   string `yaml:"description"`
		DescriptionZh string `yaml:"description_zh"`
		Image         string `yaml:"image"`
		Price         string `yaml:"price"`
		SiteName      string `yaml:"site_name"`
	} `yaml:"items"`
}

func loadCatalogue(data []byte) (*catalogue, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f catalogueFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	c := &catalogue{items: map[string]map[string]Card{}, generic: map[string]Card{}}
	for id, g := range f.Generic {
		c.generic[id] = Card{Title: g.Title, Description: g.Description, DescriptionZh: g.DescriptionZh}
	}
	for _, it := range f.Items {
		if it.Platform == "" || it.ID == "" || it.Title == "" || it.SiteName == "" {
			return nil, fmt.Errorf("catalogue: item %q of %q lacks platform, id, title or site_name", it.ID, it.Platform)
		}
		if err := checkPicture(it.Image); err != nil {
			return nil, fmt.Errorf("catalogue: item %q of %q: %w", it.ID, it.Platform, err)
		}
		if c.items[it.Platform] == nil {
			c.items[it.Platform] = map[string]Card{}
		}
		c.items[it.Platform][it.ID] = Card{Title: it.Title, Description: it.Description, DescriptionZh: it.DescriptionZh, Image: it.Image, Price: it.Price, SiteName: it.SiteName}
	}
	return c, nil
}

// card returns the catalogue card of link l (decided as a card for
// platform pl): the item's, or the platform's generic card.
func (c *catalogue) card(pl Platform, l *Link) *Card {
	if l.Kind == KindURL {
		if id := itemID(l.URL); id != "" {
			if card, ok := c.items[pl.ID][id]; ok {
				card.URL = l.URL
				return &card
			}
		}
	}
	card := c.generic[pl.ID]
	if card.Title == "" {
		card.Title = pl.Name + " " + pl.NameZh
		card.Description = pl.Name + " link preview"
	}
	card.SiteName = pl.Name + " " + pl.NameZh
	card.URL = l.URL
	if l.Kind != KindURL && len(pl.Domains) > 0 {
		card.URL = "https://" + pl.Domains[0] + "/"
	}
	return &card
}

// itemID returns the item id of a product URL: its goods_id or id query
// parameter, else its last path segment without extension.
func itemID(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	q := u.Query()
	for _, k := range []string{"goods_id", "id"} {
		if v := q.Get(k); v != "" {
			return v
		}
	}
	base := path.Base(u.Path)
	if base == "/" || base == "." {
		return ""
	}
	return strings.TrimSuffix(base, path.Ext(base))
}

// errNoOpenGraph is returned when a policy assigns the OpenGraph provider
// but the bot was built without a fetcher.
var errNoOpenGraph = errors.New("no OpenGraph fetcher configured")

// attachCard fills l.Card from the platform's provider, or degrades l to a
// hyperlink whose reason says the preview could not be loaded.
func (b *Bot) attachCard(ctx context.Context, p *Policy, l *Link) {
	i, ok := p.platformIx[l.Platform]
	if !ok {
		// A rule gave a card to a site outside the registry: there is no
		// provider to ask.
		degrade(l, errNoProvider)
		return
	}
	pl := p.platforms[i]
	switch p.providers[i] {
	case providerOpenGraph:
		if b.og == nil || l.Kind != KindURL {
			degrade(l, errNoOpenGraph)
			return
		}
		card, err := b.og.Fetch(ctx, l.URL)
		if err != nil {
			b.log.Debug("opengraph preview failed", zap.String("url", l.URL), zap.Error(err))
			degrade(l, err)
			return
		}
		l.Card = card
	default:
		l.Card = b.cat.card(pl, l)
	}
}

// degrade turns a card link into a hyperlink whose reason says why. The
// reason names the kind of failure only: the error itself may hold
// resolved internal addresses, which chat members must not learn.
func degrade(l *Link, err error) {
	why, whyZh := "the page gave no preview", "页面没有提供预览"
	switch {
	case errors.Is(err, errNoOpenGraph):
		why, whyZh = "no OpenGraph fetcher is configured", "未配置OpenGraph抓取"
	case errors.Is(err, errNoProvider):
		why, whyZh = "no card provider serves this site", "没有为该网站提供卡片的服务"
	case errors.Is(err, errRefused):
		why, whyZh = "the site's address is not public", "该网站的地址不是公网地址"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), isTimeout(err):
		why, whyZh = "the site did not answer in time", "该网站未及时响应"
	}
	l.Outcome = Hyperlink
	l.Card = nil
	l.Reason += " The preview could not be loaded (" + why + "), so the link is shown as a plain hyperlink."
	l.ReasonZh += "预览无法加载（" + whyZh + "），因此显示为普通链接。"
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

var errNoProvider = errors.New("no card provider for this site")

// checkPicture accepts a catalogue picture: none, an absolute http(s) URL,
// or a path on the server that serves the page (linkwall's own pictures).
func checkPicture(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("image %q: %w", s, err)
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") && !strings.Contains(s, `\`):
		return nil
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
		return nil
	}
	return fmt.Errorf("image %q is neither an http(s) URL nor a path starting with /", s)
}
