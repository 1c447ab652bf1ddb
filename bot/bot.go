package bot

import (
	"context"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// Bot applies the current policy to messages. It is safe for concurrent
// use; SetPolicy swaps the policy atomically, so a running server can
// reload a policy file without a restart.
type Bot struct {
	policy atomic.Pointer[Policy]
	log    *zap.Logger
	x      *Extractor
	cat    *catalogue
	og     *OpenGraphFetcher
}

// Option configures a Bot.
type Option func(*Bot)

// WithOpenGraph gives the bot the fetcher used for platforms whose policy
// card provider is "opengraph". Without one, such links degrade to
// hyperlinks.
func WithOpenGraph(f *OpenGraphFetcher) Option {
	return func(b *Bot) { b.og = f }
}

// New returns a Bot applying p (DefaultPolicy when nil). logger may be nil.
func New(p *Policy, logger *zap.Logger, opts ...Option) *Bot {
	if p == nil {
		p = DefaultPolicy()
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	cat, err := loadCatalogue(catalogueYAML)
	if err != nil {
		panic("bot: embedded catalogue is invalid: " + err.Error()) // checked by a test
	}
	b := &Bot{log: logger, x: NewExtractor(), cat: cat}
	b.policy.Store(p)
	for _, o := range opts {
		o(b)
	}
	return b
}

// Policy returns the policy in force.
func (b *Bot) Policy() *Policy { return b.policy.Load() }

// SetPolicy swaps the policy atomically; messages being decided finish
// under the policy they started with.
func (b *Bot) SetPolicy(p *Policy) { b.policy.Store(p) }

// Result is the bot's answer for one message.
type Result struct {
	Links     []Link `json:"links"`     // never nil: [] in JSON when none
	Truncated bool   `json:"truncated"` // more than MaxLinks links; only the first MaxLinks are in Links
	Era       string `json:"era"`
	Chat      Chat   `json:"chat"`
}

// Decide extracts, classifies and decides every link of text in chat c
// under era (an era id; unknown ids mean the policy's default). It never
// fails: a card provider error degrades the link to a hyperlink with a
// reason that says so.
func (b *Bot) Decide(ctx context.Context, text string, c Chat, era string) Result {
	p := b.policy.Load()
	if _, ok := p.eraIx[era]; !ok {
		era = p.DefaultEra()
	}
	found, truncated := b.x.Extract(p, text)
	res := Result{Links: make([]Link, len(found)), Truncated: truncated, Era: era, Chat: c}
	var wg sync.WaitGroup
	for i, f := range found {
		res.Links[i] = p.Decide(f, c, era)
		if res.Links[i].Outcome != CardView {
			continue
		}
		if j, ok := p.platformIx[f.Platform]; ok && p.providers[j] == providerOpenGraph && b.og != nil {
			// Network fetches run concurrently, each bounded by the
			// fetcher's timeout; all end before Decide returns.
			wg.Go(func() { b.attachCard(ctx, p, &res.Links[i]) })
			continue
		}
		b.attachCard(ctx, p, &res.Links[i])
	}
	wg.Wait()
	return res
}
