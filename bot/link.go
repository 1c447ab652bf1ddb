package bot

// Chat is the kind of conversation a link is posted in.
type Chat string

// The two chat kinds the rules distinguish.
const (
	Direct Chat = "direct"
	Group  Chat = "group"
)

// Outcome is how a chat renders a link.
type Outcome string

// The three outcomes. The strings are part of API v1.
const (
	Blocked   Outcome = "blocked"
	Hyperlink Outcome = "hyperlink"
	CardView  Outcome = "card"
)

// Link is one link found in a message, with the decision taken for it.
// Its JSON form is part of API v1 (`linkwall preview --json`, message frames).
type Link struct {
	URL      string  `json:"url"`      // as it should be opened (scheme added where missing)
	Kind     string  `json:"kind"`     // "url" or "token" (a Taobao ￥…￥ share token)
	Platform string  `json:"platform"` // registry id, "" for a site not in the registry
	Owner    string  `json:"owner"`
	Category string  `json:"category"`
	Outcome  Outcome `json:"outcome"`
	Rule     string  `json:"rule"`      // id of the rule that matched
	Reason   string  `json:"reason"`    // English
	ReasonZh string  `json:"reason_zh"` // Chinese
	Since    string  `json:"since"`     // date (YYYY-MM-DD) the rule began, "" if always
	Source   string  `json:"source"`    // dated source of the rule
	// LoginRequired is set on a bare rival hyperlink: the reader must log in
	// on that platform before anything is visible.
	LoginRequired bool  `json:"login_required"`
	Card          *Card `json:"card"`
}

// Card is the rich preview shown for platforms with API access.
type Card struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	// DescriptionZh is the description in Chinese, where the card source
	// has one (the demo catalogue does; a page's OpenGraph tags do not).
	DescriptionZh string `json:"description_zh,omitempty"`
	Image         string `json:"image"`
	Price         string `json:"price,omitempty"`
	SiteName      string `json:"site_name"`
	URL           string `json:"url"`
}
