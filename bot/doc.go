// Package bot is linkwall's link bot: it finds every link in a chat
// message, classifies it against a platform registry and decides, from a
// data-driven policy, whether the chat shows it blocked, as a bare
// hyperlink or as a rich card, and why — the way WeChat treated links to
// rival platforms in 2021 and 2022.
//
// The pipeline has three steps:
//
//   - Extraction (Extractor) finds http(s) links, scheme-less links of
//     registry domains and of "www." hosts, and Taobao ￥…￥ share tokens
//     in text as people paste it, at most MaxLinks per message.
//   - Decision (Policy.Decide) is a lookup in a table that LoadPolicy
//     precomputes for every era × chat kind × platform from the policy's
//     ordered rules; each decision carries the rule id, reasons in English
//     and Chinese and the rule's dated source.
//   - Cards come from a provider per platform: the embedded demo catalogue,
//     or an OpenGraphFetcher that never connects to non-public addresses.
//     A provider failure degrades the link to a hyperlink, and the reason
//     says so.
//
// The default policy (policy.yaml) and catalogue (catalogue.yaml) are
// embedded; Bot.SetPolicy swaps a policy atomically at run time.
package bot
