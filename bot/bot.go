package bot

// PLACEHOLDER: the bot helper replaces this file. It only fixes the API that
// the server codes against (see the bot API contract).

import (
	"context"
	"sync/atomic"

	"go.uber.org/zap"
)

// MaxLinks is how many links of one message the bot handles.
const MaxLinks = 20

// Policy is a validated, immutable link policy.
type Policy struct{}

// Era is one step of the timeline.
type Era struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	NameZh       string `json:"name_zh"`
	From         string `json:"from"`
	Hypothetical bool   `json:"hypothetical"`
	Summary      string `json:"summary"`
	SummaryZh    string `json:"summary_zh"`
}

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

// DefaultPolicy returns the embedded default policy.
func DefaultPolicy() *Policy { return &Policy{} }

// LoadPolicy parses and validates a policy.
func LoadPolicy(name string, data []byte) (*Policy, error) { return &Policy{}, nil }

// LoadPolicyFile reads, parses and validates a policy file.
func LoadPolicyFile(path string) (*Policy, error) { return &Policy{}, nil }

// Eras returns the eras in timeline order.
func (p *Policy) Eras() []Era { return nil }

// DefaultEra returns the default era id.
func (p *Policy) DefaultEra() string { return "group-ecommerce" }

// ResolveEra resolves an era id or a date.
func (p *Policy) ResolveEra(idOrDate string) (Era, error) { return Era{ID: idOrDate}, nil }

// Platforms returns the registry.
func (p *Policy) Platforms() []Platform { return nil }

// BlockedNotice returns the notice shown under a blocked link.
func (p *Policy) BlockedNotice(lang string) string { return "" }

// Bot applies the current policy.
type Bot struct {
	policy atomic.Pointer[Policy]
	log    *zap.Logger
}

// Option configures a Bot.
type Option func(*Bot)

// New returns a Bot applying p.
func New(p *Policy, logger *zap.Logger, opts ...Option) *Bot {
	b := &Bot{log: logger}
	b.policy.Store(p)
	for _, o := range opts {
		o(b)
	}
	return b
}

// Policy returns the policy in force.
func (b *Bot) Policy() *Policy { return b.policy.Load() }

// SetPolicy swaps the policy atomically.
func (b *Bot) SetPolicy(p *Policy) { b.policy.Store(p) }

// Result is the bot's answer for one message.
type Result struct {
	Links     []Link `json:"links"`
	Truncated bool   `json:"truncated"`
	Era       string `json:"era"`
	Chat      Chat   `json:"chat"`
}

// Decide extracts, classifies and decides every link of text.
func (b *Bot) Decide(ctx context.Context, text string, chat Chat, era string) Result {
	return Result{Links: []Link{}, Era: era, Chat: chat}
}
