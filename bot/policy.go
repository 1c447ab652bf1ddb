package bot

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/publicsuffix"
)

//go:embed policy.yaml
var defaultPolicyYAML []byte

// Limits on policy files, so that a bad file cannot exhaust memory or
// flood the terminal.
const (
	maxPolicyBytes  = 1 << 20 // a policy is a few KiB; 1 MiB is generous
	maxPolicyItems  = 1000    // per list: owners, platforms, eras, rules, domains
	maxPolicyErrors = 50      // errors reported before giving up
)

const dateLayout = "2006-01-02"

// Platform is one platform of the registry.
type Platform struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	NameZh   string   `json:"name_zh"`
	Owner    string   `json:"owner"`
	Category string   `json:"category"`
	API      bool     `json:"api"`
	Domains  []string `json:"domains"`
}

// Era is one step of the timeline.
type Era struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	NameZh       string `json:"name_zh"`
	From         string `json:"from"` // YYYY-MM-DD, "" for the first era and hypothetical ones
	Hypothetical bool   `json:"hypothetical"`
	Summary      string `json:"summary"`
	SummaryZh    string `json:"summary_zh"`
	// Rules lists the rules given for some eras only (eras: in the policy)
	// that hold in this one. A rule without a since date has always held,
	// unless it is listed in hypothetical eras only: then it never did.
	Rules []string `json:"rules,omitempty"`
}

// Card providers a platform can use.
const (
	providerCatalogue = "catalogue" // the built-in demo catalogue
	providerOpenGraph = "opengraph" // the page's OpenGraph tags, fetched live
)

// Policy is a validated, immutable link policy: platforms, eras, rules and
// notices. All decisions are precomputed at load time into a table indexed
// by era, chat kind and platform, so deciding a link is a lookup.
type Policy struct {
	name       string
	platforms  []Platform
	providers  []string       // card provider per platform index
	platformIx map[string]int // platform id → index
	domains    map[string]int // registrable domain → platform index
	tokens     string         // platform id owning ￥…￥ share tokens, "" for none
	eras       []Era
	eraIx      map[string]int
	defaultEra int
	notice     [2]string // en, zh
	rules      int

	// table holds one decided Link template per era × chat × platform;
	// the extra last platform slot is "a site not in the registry".
	table []Link
}

// DefaultPolicy returns the embedded default policy. It never fails: a
// test loads the embedded file.
func DefaultPolicy() *Policy {
	p, err := LoadPolicy("policy.yaml", defaultPolicyYAML)
	if err != nil {
		panic("bot: embedded policy is invalid: " + err.Error())
	}
	return p
}

// LoadPolicyFile reads, parses and validates a policy file.
func LoadPolicyFile(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return LoadPolicy(path, data)
}

// LoadPolicy parses and validates a policy. Every problem found is
// reported as "name:line: message"; the returned error joins them.
func LoadPolicy(name string, data []byte) (*Policy, error) {
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("%s: policy larger than %d bytes", name, maxPolicyBytes)
	}
	var root, more yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	// A second document would be ignored; say so instead.
	switch err := dec.Decode(&more); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(name, err)
	default:
		return nil, fmt.Errorf("%s:%d: a second YAML document starts here; a policy is one document", name, more.Line)
	}
	l := &loader{name: name, p: &Policy{name: name}}
	l.load(&root)
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return l.p, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError rewrites the parser's "yaml: line N: msg" as "name:N: msg".
func yamlError(name string, err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("%s:1: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
}

// Name returns the name the policy was loaded under (its file name).
func (p *Policy) Name() string { return p.name }

// Counts returns how many platforms, eras and rules the policy holds.
func (p *Policy) Counts() (platforms, eras, rules int) {
	return len(p.platforms), len(p.eras), p.rules
}

// Eras returns the eras in timeline order.
func (p *Policy) Eras() []Era {
	out := slices.Clone(p.eras)
	for i := range out {
		out[i].Rules = slices.Clone(out[i].Rules)
	}
	return out
}

// DefaultEra returns the id of the era used when none is given.
func (p *Policy) DefaultEra() string { return p.eras[p.defaultEra].ID }

// Platforms returns the registry, in policy order.
func (p *Policy) Platforms() []Platform {
	out := slices.Clone(p.platforms)
	for i := range out {
		out[i].Domains = slices.Clone(out[i].Domains)
	}
	return out
}

// BlockedNotice returns the notice WeChat showed for a blocked link, in
// lang "zh" or (for anything else) English.
func (p *Policy) BlockedNotice(lang string) string {
	if lang == "zh" {
		return p.notice[1]
	}
	return p.notice[0]
}

// ResolveEra resolves an era id, or a date (YYYY-MM-DD) to the era in force
// on that day. Hypothetical eras are reachable only by id.
func (p *Policy) ResolveEra(idOrDate string) (Era, error) {
	if i, ok := p.eraIx[idOrDate]; ok {
		return p.eras[i], nil
	}
	if d, err := time.Parse(dateLayout, idOrDate); err == nil {
		if i := p.eraOn(d.Format(dateLayout)); i >= 0 {
			return p.eras[i], nil
		}
		return Era{}, fmt.Errorf("no era in force on %s: the timeline starts on %s", idOrDate, p.firstDate())
	}
	ids := make([]string, len(p.eras))
	for i, e := range p.eras {
		ids[i] = e.ID
	}
	return Era{}, fmt.Errorf("unknown era %q: use one of %s, or a date YYYY-MM-DD", idOrDate, strings.Join(ids, ", "))
}

// eraOn returns the index of the non-hypothetical era in force on date
// (YYYY-MM-DD, which compares correctly as a string), or -1.
func (p *Policy) eraOn(date string) int {
	in := -1
	for i, e := range p.eras {
		if e.Hypothetical || e.From > date {
			continue
		}
		in = i
	}
	return in
}

func (p *Policy) firstDate() string {
	for _, e := range p.eras {
		if e.From != "" {
			return e.From
		}
	}
	return ""
}

// Platform returns the registry entry of platform id.
func (p *Policy) Platform(id string) (Platform, bool) {
	i, ok := p.platformIx[id]
	if !ok {
		return Platform{}, false
	}
	return p.platforms[i], true
}

// loader walks the YAML tree by hand so that every message can name the
// line of the offending node.
type loader struct {
	name string
	p    *Policy
	errs []error

	owners     map[string][2]string // id → name, name_zh
	categories map[string]bool
	domainLine map[string]int // registrable domain → line first claiming it
}

func (l *loader) errf(n *yaml.Node, format string, args ...any) {
	if len(l.errs) == maxPolicyErrors {
		l.errs = append(l.errs, fmt.Errorf("%s: too many errors", l.name))
	}
	if len(l.errs) > maxPolicyErrors {
		return
	}
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	l.errs = append(l.errs, fmt.Errorf("%s:%d: %s", l.name, line, fmt.Sprintf(format, args...)))
}

func deref(n *yaml.Node) *yaml.Node {
	// An alias points at an anchored node defined earlier, so this ends.
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// fields checks that n is a mapping holding only allowed keys and returns
// its values by key.
func (l *loader) fields(n *yaml.Node, what string, allowed ...string) map[string]*yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		l.errf(n, "%s must be a mapping", what)
		return nil
	}
	// Under "", the mapping itself: a missing field is reported at its line
	// (anyNode) even when the mapping is empty.
	m := map[string]*yaml.Node{"": n}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			l.errf(k, "%s: unknown field %q (allowed: %s)", what, k.Value, strings.Join(allowed, ", "))
			continue
		}
		// yaml.v3 finds duplicate keys only when decoding into Go values;
		// here the later one would silently win.
		if first, dup := seen[k.Value]; dup {
			l.errf(k, "%s: %s given twice (first on line %d)", what, k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		v = deref(v)
		if v == nil {
			continue
		}
		// Point messages about a block list or mapping at its key.
		v.Line = k.Line
		m[k.Value] = v
	}
	return m
}

// str returns the scalar at key; a missing or null value is "".
func (l *loader) str(m map[string]*yaml.Node, key, what string, required bool) string {
	v, ok := m[key]
	if !ok || v.Tag == "!!null" {
		if required {
			l.errf(l.anyNode(m), "%s: missing %s", what, key)
		}
		return ""
	}
	if v.Kind != yaml.ScalarNode {
		l.errf(v, "%s: %s must be a string", what, key)
		return ""
	}
	s := strings.TrimSpace(v.Value)
	if required && s == "" {
		l.errf(v, "%s: empty %s", what, key)
	}
	return s
}

func (l *loader) boolean(m map[string]*yaml.Node, key, what string) (val, set bool) {
	v, ok := m[key]
	if !ok {
		return false, false
	}
	// true or false only: YAML 1.1's yes/no/on/off and null are typos
	// here more often than meant.
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" || v.Decode(&val) != nil {
		l.errf(v, "%s: %s must be true or false", what, key)
		return false, false
	}
	return val, true
}

func (l *loader) list(n *yaml.Node, what string) []*yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		l.errf(n, "%s must be a list", what)
		return nil
	}
	if len(n.Content) > maxPolicyItems {
		l.errf(n, "%s: more than %d entries", what, maxPolicyItems)
		return nil
	}
	return n.Content
}

func (l *loader) strs(m map[string]*yaml.Node, key, what string) []string {
	v, ok := m[key]
	if !ok {
		return nil
	}
	items := l.list(v, what+": "+key)
	if len(items) == 0 {
		// An empty condition would silently match everything.
		l.errf(v, "%s: %s is empty", what, key)
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		it = deref(it)
		if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
			l.errf(it, "%s: %s entries must be strings", what, key)
			continue
		}
		out = append(out, strings.TrimSpace(it.Value))
	}
	return out
}

// anyNode returns some node of m, for the line of a "missing field" error.
func (l *loader) anyNode(m map[string]*yaml.Node) *yaml.Node {
	var first *yaml.Node
	for k, v := range m {
		if k != "" && (first == nil || v.Line < first.Line) {
			first = v
		}
	}
	if first == nil {
		return m[""] // an empty mapping
	}
	return first
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func (l *loader) id(m map[string]*yaml.Node, what string, seen map[string]int) string {
	id := l.str(m, "id", what, true)
	if id == "" {
		return ""
	}
	n := m["id"]
	if !idPattern.MatchString(id) {
		l.errf(n, "%s: id %q must be lower-case letters, digits, '-' or '_'", what, id)
	}
	if line, dup := seen[id]; dup {
		l.errf(n, "%s: duplicate id %q (first at line %d)", what, id, line)
	}
	seen[id] = n.Line
	return id
}

func (l *loader) load(root *yaml.Node) {
	if root.Kind == 0 || len(root.Content) == 0 {
		l.errf(root, "empty policy")
		return
	}
	doc := root
	if doc.Kind == yaml.DocumentNode {
		doc = doc.Content[0]
	}
	top := l.fields(doc, "policy", "version", "default_era", "blocked_notice", "owners", "platforms", "eras", "rules")
	if top == nil {
		return
	}
	for _, key := range []string{"version", "default_era", "blocked_notice", "owners", "platforms", "eras", "rules"} {
		if _, ok := top[key]; !ok {
			l.errf(doc, "policy: missing %s", key)
		}
	}
	if v, ok := top["version"]; ok {
		if n, err := strconv.Atoi(v.Value); err != nil || n != 1 {
			l.errf(v, "policy: unsupported version %q (want 1)", v.Value)
		}
	}
	if n, ok := top["blocked_notice"]; ok {
		m := l.fields(n, "blocked_notice", "en", "zh")
		l.p.notice = [2]string{l.str(m, "en", "blocked_notice", true), l.str(m, "zh", "blocked_notice", true)}
	}
	if n, ok := top["owners"]; ok {
		l.loadOwners(n)
	}
	if n, ok := top["platforms"]; ok {
		l.loadPlatforms(n)
	}
	if n, ok := top["eras"]; ok {
		l.loadEras(n)
	}
	if v, ok := top["default_era"]; ok {
		i, found := l.p.eraIx[v.Value]
		if v.Kind != yaml.ScalarNode {
			l.errf(v, "default_era must be an era's id")
		} else if !found {
			l.errf(v, "default_era: unknown era %q", v.Value)
		}
		l.p.defaultEra = i
	}
	if n, ok := top["rules"]; ok {
		l.loadRules(n)
	}
}

func (l *loader) loadOwners(n *yaml.Node) {
	l.owners = map[string][2]string{}
	seen := map[string]int{}
	for _, it := range l.list(n, "owners") {
		m := l.fields(it, "owner", "id", "name", "name_zh")
		if m == nil {
			continue
		}
		id := l.id(m, "owner", seen)
		l.owners[id] = [2]string{l.str(m, "name", "owner "+id, true), l.str(m, "name_zh", "owner "+id, true)}
	}
}

func (l *loader) loadPlatforms(n *yaml.Node) {
	p := l.p
	p.platformIx = map[string]int{}
	p.domains = map[string]int{}
	l.categories = map[string]bool{}
	l.domainLine = map[string]int{}
	seen := map[string]int{}
	items := l.list(n, "platforms")
	if len(items) == 0 && n != nil {
		l.errf(n, "platforms: none defined")
	}
	for _, it := range items {
		m := l.fields(it, "platform", "id", "name", "name_zh", "owner", "category", "api", "tokens", "card", "domains")
		if m == nil {
			continue
		}
		id := l.id(m, "platform", seen)
		what := "platform " + id
		pl := Platform{
			ID:       id,
			Name:     l.str(m, "name", what, true),
			NameZh:   l.str(m, "name_zh", what, true),
			Owner:    l.str(m, "owner", what, true),
			Category: l.str(m, "category", what, true),
		}
		if _, ok := l.owners[pl.Owner]; pl.Owner != "" && !ok {
			l.errf(m["owner"], "%s: unknown owner %q", what, pl.Owner)
		}
		if pl.Category != "" && !idPattern.MatchString(pl.Category) {
			l.errf(m["category"], "%s: category %q must be lower-case letters, digits, '-' or '_'", what, pl.Category)
		}
		l.categories[pl.Category] = true
		pl.API, _ = l.boolean(m, "api", what)
		provider := l.str(m, "card", what, false)
		switch provider {
		case "":
			provider = providerCatalogue
		case providerCatalogue, providerOpenGraph:
		default:
			l.errf(m["card"], "%s: unknown card provider %q (use %s or %s)", what, provider, providerCatalogue, providerOpenGraph)
		}
		if tok, _ := l.boolean(m, "tokens", what); tok {
			if p.tokens != "" {
				l.errf(m["tokens"], "%s: share tokens already belong to platform %q", what, p.tokens)
			}
			p.tokens = id
		}
		idx := len(p.platforms)
		if _, ok := m["domains"]; !ok {
			l.errf(l.anyNode(m), "%s: missing domains", what)
		}
		for _, d := range l.strs(m, "domains", what) {
			l.addDomain(m["domains"], what, d, idx)
			pl.Domains = append(pl.Domains, d)
		}
		if _, ok := m["domains"]; ok && len(pl.Domains) == 0 {
			l.errf(m["domains"], "%s: no domains", what)
		}
		p.platformIx[id] = idx
		p.platforms = append(p.platforms, pl)
		p.providers = append(p.providers, provider)
	}
}

var hostPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)

// addDomain registers d for platform idx under its registrable domain:
// links match on that, so two platforms may not share one.
func (l *loader) addDomain(n *yaml.Node, what, d string, idx int) {
	if !hostPattern.MatchString(d) {
		l.errf(n, "%s: %q is not a lower-case domain name", what, d)
		return
	}
	reg, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		l.errf(n, "%s: domain %q has no registrable part (it is a public suffix)", what, d)
		return
	}
	if other, ok := l.p.domains[reg]; ok && other != idx {
		l.errf(n, "%s: domain %q overlaps %s of platform %q (line %d): links match on the registrable domain",
			what, d, reg, l.p.platforms[other].ID, l.domainLine[reg])
		return
	}
	l.p.domains[reg] = idx
	if _, ok := l.domainLine[reg]; !ok {
		l.domainLine[reg] = n.Line
	}
}

func (l *loader) loadEras(n *yaml.Node) {
	p := l.p
	p.eraIx = map[string]int{}
	seen := map[string]int{}
	items := l.list(n, "eras")
	if len(items) == 0 && n != nil {
		l.errf(n, "eras: none defined")
	}
	lastDate, sawHypothetical, actual := "", false, 0
	for i, it := range items {
		m := l.fields(it, "era", "id", "name", "name_zh", "from", "hypothetical", "summary", "summary_zh")
		if m == nil {
			continue
		}
		id := l.id(m, "era", seen)
		what := "era " + id
		e := Era{
			ID:        id,
			Name:      l.str(m, "name", what, true),
			NameZh:    l.str(m, "name_zh", what, true),
			From:      l.str(m, "from", what, false),
			Summary:   l.str(m, "summary", what, true),
			SummaryZh: l.str(m, "summary_zh", what, true),
		}
		e.Hypothetical, _ = l.boolean(m, "hypothetical", what)
		switch {
		case e.Hypothetical:
			if e.From != "" {
				l.errf(m["from"], "%s: a hypothetical era has no date", what)
			}
			sawHypothetical = true
		case sawHypothetical:
			l.errf(it, "%s: real eras must come before hypothetical ones", what)
		case e.From == "":
			if i > 0 {
				l.errf(it, "%s: only the first era may have no date", what)
			}
			actual++
		default:
			if _, err := time.Parse(dateLayout, e.From); err != nil {
				l.errf(m["from"], "%s: from %q is not a date YYYY-MM-DD", what, e.From)
			} else if e.From <= lastDate {
				l.errf(m["from"], "%s: from %s is not after the previous era (%s)", what, e.From, lastDate)
			}
			lastDate = e.From
			actual++
		}
		p.eraIx[id] = len(p.eras)
		p.eras = append(p.eras, e)
	}
	if len(items) > 0 && actual == 0 {
		l.errf(n, "eras: at least one era must be real (not hypothetical)")
	}
}

// rule is a parsed rule, before it is compiled into the decision table.
type rule struct {
	id                              string
	owners, categories, platforms   []string
	chats                           []Chat
	api, known                      *bool
	eras                            []bool // applies in era i
	outcome                         Outcome
	reason, reasonZh, since, source string
	loginRequired                   bool
}

var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

func (l *loader) loadRules(n *yaml.Node) {
	p := l.p
	seen := map[string]int{}
	var rules []rule
	items := l.list(n, "rules")
	if len(items) == 0 && n != nil {
		l.errf(n, "rules: none defined")
	}
	for _, it := range items {
		m := l.fields(it, "rule", "id", "match", "eras", "since", "outcome", "login_required", "reason", "reason_zh", "source")
		if m == nil {
			continue
		}
		r := rule{id: l.id(m, "rule", seen)}
		what := "rule " + r.id
		r.outcome = Outcome(l.str(m, "outcome", what, true))
		switch r.outcome {
		case Blocked, Hyperlink, CardView, "":
		default:
			l.errf(m["outcome"], "%s: unknown outcome %q (use blocked, hyperlink or card)", what, r.outcome)
		}
		r.reason = l.str(m, "reason", what, true)
		r.reasonZh = l.str(m, "reason_zh", what, true)
		for _, kv := range [][2]string{{"reason", r.reason}, {"reason_zh", r.reasonZh}} {
			key := kv[0]
			for _, ph := range placeholder.FindAllString(kv[1], -1) {
				if ph != "{platform}" && ph != "{owner}" {
					l.errf(m[key], "%s: unknown placeholder %s in %s (use {platform} or {owner})", what, ph, key)
				}
			}
		}
		r.source = l.str(m, "source", what, true)
		r.loginRequired, _ = l.boolean(m, "login_required", what)
		if r.loginRequired && r.outcome != Hyperlink {
			l.errf(m["login_required"], "%s: login_required only applies to hyperlink outcomes", what)
		}
		r.eras = make([]bool, len(p.eras))
		first := 0
		if r.since = l.str(m, "since", what, false); r.since != "" {
			if _, err := time.Parse(dateLayout, r.since); err != nil {
				l.errf(m["since"], "%s: since %q is not a date YYYY-MM-DD", what, r.since)
			} else if first = p.eraOn(r.since); first < 0 {
				l.errf(m["since"], "%s: since %s is before the first era", what, r.since)
				first = 0
			}
		}
		if _, ok := m["eras"]; ok {
			for _, id := range l.strs(m, "eras", what) {
				i, ok := p.eraIx[id]
				if !ok {
					l.errf(m["eras"], "%s: unknown era %q", what, id)
					continue
				}
				if i < first {
					l.errf(m["eras"], "%s: era %q is before the rule's since date %s", what, id, r.since)
				}
				r.eras[i] = true
				p.eras[i].Rules = append(p.eras[i].Rules, r.id)
			}
		} else {
			for i := first; i < len(r.eras); i++ {
				r.eras[i] = true
			}
		}
		if mn, ok := m["match"]; ok {
			l.loadMatch(mn, what, &r)
		}
		rules = append(rules, r)
	}
	p.rules = len(rules)
	if len(l.errs) == 0 {
		l.compile(n, rules)
	}
}

func (l *loader) loadMatch(n *yaml.Node, what string, r *rule) {
	p := l.p
	m := l.fields(n, what+": match", "owner", "category", "platform", "api", "chat", "known")
	if m == nil {
		return
	}
	r.owners = l.strs(m, "owner", what+": match")
	for _, o := range r.owners {
		if _, ok := l.owners[o]; !ok {
			l.errf(m["owner"], "%s: unknown owner %q", what, o)
		}
	}
	r.categories = l.strs(m, "category", what+": match")
	for _, c := range r.categories {
		if !l.categories[c] {
			l.errf(m["category"], "%s: no platform has category %q", what, c)
		}
	}
	r.platforms = l.strs(m, "platform", what+": match")
	for _, id := range r.platforms {
		if _, ok := p.platformIx[id]; !ok {
			l.errf(m["platform"], "%s: unknown platform %q", what, id)
		}
	}
	for _, c := range l.strs(m, "chat", what+": match") {
		if c != string(Direct) && c != string(Group) {
			l.errf(m["chat"], "%s: unknown chat kind %q (use direct or group)", what, c)
		}
		r.chats = append(r.chats, Chat(c))
	}
	if v, ok := l.boolean(m, "api", what+": match"); ok {
		r.api = &v
	}
	if v, ok := l.boolean(m, "known", what+": match"); ok {
		r.known = &v
	}
	if r.known != nil && !*r.known && (r.owners != nil || r.categories != nil || r.platforms != nil || r.api != nil) {
		l.errf(n, "%s: known: false cannot be combined with platform conditions", what)
	}
}

// matches reports whether r decides links of platform pl (nil: a site not
// in the registry) in chat c.
func (r *rule) matches(pl *Platform, c Chat) bool {
	if r.chats != nil && !slices.Contains(r.chats, c) {
		return false
	}
	if pl == nil {
		// Platform conditions describe registered platforms only.
		return (r.known == nil || !*r.known) && r.owners == nil && r.categories == nil && r.platforms == nil && r.api == nil
	}
	return (r.known == nil || *r.known) &&
		(r.owners == nil || slices.Contains(r.owners, pl.Owner)) &&
		(r.categories == nil || slices.Contains(r.categories, pl.Category)) &&
		(r.platforms == nil || slices.Contains(r.platforms, pl.ID)) &&
		(r.api == nil || *r.api == pl.API)
}

// chats is the order of the chat dimension of the decision table.
var chats = [2]Chat{Direct, Group}

// compile fills the decision table: the first matching rule decides each
// era × chat × platform, and every cell must be decided.
func (l *loader) compile(n *yaml.Node, rules []rule) {
	p := l.p
	np := len(p.platforms) + 1
	p.table = make([]Link, len(p.eras)*len(chats)*np)
	for e, era := range p.eras {
		for c, chat := range chats {
			for pi := range np {
				var pl *Platform
				name, nameZh, owner, ownerZh := "this site", "该网站", "its owner", "其所有者"
				if pi < len(p.platforms) {
					pl = &p.platforms[pi]
					name, nameZh = pl.Name, pl.NameZh
					owner, ownerZh = l.owners[pl.Owner][0], l.owners[pl.Owner][1]
				}
				i := slices.IndexFunc(rules, func(r rule) bool { return r.eras[e] && r.matches(pl, chat) })
				if i < 0 {
					l.errf(n, "rules: no rule decides %s links in %s chats of era %s", name, chat, era.ID)
					continue
				}
				r := &rules[i]
				en := strings.NewReplacer("{platform}", name, "{owner}", owner)
				zh := strings.NewReplacer("{platform}", nameZh, "{owner}", ownerZh)
				lk := Link{
					Outcome:       r.outcome,
					Rule:          r.id,
					Reason:        en.Replace(r.reason),
					ReasonZh:      zh.Replace(r.reasonZh),
					Since:         r.since,
					Source:        r.source,
					LoginRequired: r.loginRequired,
				}
				if pl != nil {
					lk.Platform, lk.Owner, lk.Category = pl.ID, pl.Owner, pl.Category
				}
				p.table[(e*len(chats)+c)*np+pi] = lk
			}
		}
	}
}

// Decide returns the decision for one extracted link in chat c under era
// (an era id; unknown ids fall back to the default era). It is a table
// lookup: no allocation.
func (p *Policy) Decide(f Found, c Chat, era string) Link {
	e, ok := p.eraIx[era]
	if !ok {
		e = p.defaultEra
	}
	ci := 1 // an unknown chat kind is treated as a group, the stricter one
	if c == Direct {
		ci = 0
	}
	np := len(p.platforms) + 1
	pi := len(p.platforms)
	if i, ok := p.platformIx[f.Platform]; ok {
		pi = i
	}
	l := p.table[(e*len(chats)+ci)*np+pi]
	l.URL, l.Kind = f.URL, f.Kind
	return l
}

// platformOf returns the platform index owning host (lower-case), or -1.
func (p *Policy) platformOf(host string) int {
	reg, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return -1
	}
	if i, ok := p.domains[reg]; ok {
		return i
	}
	return -1
}
