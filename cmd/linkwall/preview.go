package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/linkwall/linkwall/bot"
)

// runPreview implements `linkwall preview`: it shows how the links of TEXT
// would render, and why.
func runPreview(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	chat := fs.String("chat", string(bot.Group), "chat kind: direct or group")
	era := fs.String("era", "", "era id, or a date YYYY-MM-DD for the era in force then (default: the policy's default era)")
	policyFile := fs.String("policy", "", "policy `file` replacing the embedded default")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: linkwall preview [--chat direct|group] [--era ID|DATE] [--policy FILE] [--json] TEXT...")
		fs.PrintDefaults()
	}
	text, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the problem and the usage
	}
	if len(text) == 0 {
		fmt.Fprintln(stderr, "linkwall preview: no text given")
		fs.Usage()
		return 2
	}
	c := bot.Chat(*chat)
	if c != bot.Direct && c != bot.Group {
		fmt.Fprintf(stderr, "linkwall preview: unknown chat kind %q: use direct or group\n", *chat)
		return 2
	}
	p := bot.DefaultPolicy()
	if *policyFile != "" {
		if p, err = bot.LoadPolicyFile(*policyFile); err != nil {
			fmt.Fprintf(stderr, "linkwall preview: %v\n", err)
			return 1
		}
	}
	e, err := p.ResolveEra(cmpOr(*era, p.DefaultEra()))
	if err != nil {
		fmt.Fprintf(stderr, "linkwall preview: %v\n", err)
		return 2
	}
	b := bot.New(p, nil, bot.WithOpenGraph(bot.NewOpenGraphFetcher()))
	res := b.Decide(ctx, strings.Join(text, " "), c, e.ID)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "linkwall preview: %v\n", err)
			return 1
		}
		return 0
	}
	printTable(stdout, p, e, res)
	return 0
}

// parseInterspersed parses flags wherever they appear among the text
// arguments (`linkwall preview TEXT --json` works); everything after "--"
// is text.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var text []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		consumed := len(args) - fs.NArg()
		if fs.NArg() == 0 {
			return text, nil
		}
		if consumed > 0 && args[consumed-1] == "--" {
			return append(text, fs.Args()...), nil
		}
		text = append(text, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// printTable writes res as an aligned table followed by the reasons.
func printTable(w io.Writer, p *bot.Policy, e bot.Era, res bot.Result) {
	from := e.From
	switch {
	case e.Hypothetical:
		from = "not in history"
	case from == "":
		from = "before the first change"
	default:
		from = "from " + from
	}
	fmt.Fprintf(w, "era %s — %s (%s), %s chat\n", e.ID, e.Name, from, res.Chat)
	if len(res.Links) == 0 {
		fmt.Fprintln(w, "no links found")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tOUTCOME\tPLATFORM\tRULE\tLINK")
	for i, l := range res.Links {
		platform := cmpOr(l.Platform, "-")
		if l.Kind == bot.KindToken {
			platform += " (token)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, l.Outcome, platform, l.Rule, l.URL)
	}
	tw.Flush()
	if res.Truncated {
		fmt.Fprintf(w, "(more than %d links: only the first %d are shown)\n", bot.MaxLinks, bot.MaxLinks)
	}
	fmt.Fprintln(w)
	for i, l := range res.Links {
		fmt.Fprintf(w, "%d. %s\n   %s\n", i+1, l.Reason, l.ReasonZh)
		if l.LoginRequired {
			fmt.Fprintln(w, "   login required: the reader must log in on the platform to see anything")
		}
		if l.Outcome == bot.Blocked {
			fmt.Fprintf(w, "   shown as: %s / %s\n", p.BlockedNotice("en"), p.BlockedNotice("zh"))
		}
		if c := l.Card; c != nil {
			card := c.Title
			if c.Price != "" {
				card += " · " + c.Price
			}
			fmt.Fprintf(w, "   card: %s · %s\n", card, c.SiteName)
		}
		source := l.Source
		if l.Since != "" {
			source = "since " + l.Since + "; " + source
		}
		fmt.Fprintf(w, "   source: %s\n", source)
	}
}

// runPolicy implements `linkwall policy check FILE`.
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = "usage: linkwall policy check FILE"
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintln(stdout, usage)
		return 0
	}
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	p, err := bot.LoadPolicyFile(args[1])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	platforms, eras, rules := p.Counts()
	fmt.Fprintf(stdout, "%s: ok (%d platforms, %d eras, %d rules)\n", args[1], platforms, eras, rules)
	return 0
}
