package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// linkBot is the link bot's middleware: it decides every link of the
// message under the room's era before the message is stored, and after it
// is delivered it answers commands and posts the grey notice under blocked
// links, the way WeChat did.
func (s *Server) linkBot(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, r *Request) error {
		r.Result = s.bot.Decide(ctx, r.Text, bot.Chat(r.Room.Kind), r.Room.Era)
		if strings.HasPrefix(r.Text, "/") || hasBlocked(r.Result.Links) {
			r.Async = nil // the reply comes after the stored message
		}
		if err := next.Handle(ctx, r); err != nil || r.Dup || r.Queued {
			return err
		}
		var err error
		if strings.HasPrefix(r.Text, "/") {
			err = s.command(ctx, r)
		} else if hasBlocked(r.Message.Links) {
			err = s.botPost(ctx, &r.Room, s.blockedNotice(r.Room.Lang), true)
		}
		if err != nil && ctx.Err() == nil {
			// The user's message is stored and delivered; only the reply failed.
			s.log.Warn("LinkBot could not reply", zap.String("room", r.Room.ID), zap.Error(err))
		}
		return nil
	})
}

func hasBlocked(links []bot.Link) bool {
	for i := range links {
		if links[i].Outcome == bot.Blocked {
			return true
		}
	}
	return false
}

func (s *Server) blockedNotice(lang string) string {
	if n := s.bot.Policy().BlockedNotice(lang); n != "" {
		return n
	}
	if lang == "zh" {
		return "如需浏览，请长按网址复制后使用浏览器访问"
	}
	return "To browse, press and hold the address to copy it, then open it in a browser."
}

// command answers a message starting with '/'.
func (s *Server) command(ctx context.Context, r *Request) error {
	zh := r.Room.Lang == "zh"
	name, arg, _ := strings.Cut(strings.TrimSpace(r.Text), " ")
	arg = strings.TrimSpace(arg)
	var reply string
	switch strings.ToLower(name) {
	case "/help":
		reply = helpText(zh)
	case "/era":
		if arg == "" {
			reply = s.eraText(r.Room.Era, zh)
			break
		}
		if _, err := s.setEra(ctx, r.User, r.Room, cutEcho(arg)); err != nil {
			reply = pick(zh, "Cannot change the era: "+chat.ErrorMessage(err), "无法切换时期："+chat.ErrorMessage(err))
			if chat.ErrorCode(err) == chat.EConflict {
				reply = pick(zh, reply, "无法切换时期：课堂演示正在进行，请在演示结束后再切换。")
			}
			break
		}
		return nil // setEra has told everyone
	case "/why":
		text, err := s.whyText(ctx, r, zh)
		if err != nil {
			return err
		}
		reply = text
	case "/stats":
		st, err := s.roomStats(ctx, &r.Room)
		if err != nil {
			return err
		}
		reply = s.statsText(st, zh)
	case "/walkthrough":
		var step time.Duration
		if arg = strings.TrimSpace(arg); arg != "" { // "20", "20s" or "20 s"
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(arg, "s")), 10, 64)
			if err != nil {
				n = 0 // not a number: refused below as out of range
			}
			if step, err = walkthroughStep(n); err != nil {
				reply = pick(zh, chat.ErrorMessage(err), fmt.Sprintf("每个时期停留的秒数须为 %.0f 到 %.0f 的整数，例如 /walkthrough 20。",
					minWalkthroughStep.Seconds(), maxWalkthroughStep.Seconds()))
				break
			}
		}
		if err := s.startWalkthrough(r.Room, step); err != nil {
			reply = chat.ErrorMessage(err)
			if chat.ErrorCode(err) == chat.EConflict {
				reply = pick(zh, reply, "本聊天中已有课堂演示在进行。")
			}
			break
		}
		return nil
	default:
		name = cutEcho(name)
		reply = pick(zh, "Unknown command "+name+". ", "未知命令 "+name+"。") + helpText(zh)
	}
	return s.botPost(ctx, &r.Room, reply, false)
}

// maxEchoRunes bounds what of a command LinkBot quotes back (an unknown
// command, an unknown era): quoting a 4000-character argument whole made
// a reply longer than any message may be.
const maxEchoRunes = 64

// cutEcho cuts s to maxEchoRunes, marked with "…". A cut argument never
// names an era: no era id or date holds "…".
func cutEcho(s string) string {
	n := 0
	for i := range s {
		if n == maxEchoRunes {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// platformName is a platform's name as the page shows it, in the room's
// language; "other site" for a link outside the registry.
func (s *Server) platformName(id string, zh bool) string {
	if id == "" {
		return pick(zh, "other site", "其他网站")
	}
	p, ok := s.bot.Policy().Platform(id)
	switch {
	case !ok:
		return id
	case zh && p.NameZh != "":
		return p.NameZh
	case p.Name != "":
		return p.Name
	}
	return id
}

// outcomeWord names an outcome as the page does.
func outcomeWord(o bot.Outcome, zh bool) string {
	switch o {
	case bot.Blocked:
		return pick(zh, "blocked", "屏蔽")
	case bot.Hyperlink:
		return pick(zh, "bare hyperlink", "纯链接")
	case bot.CardView:
		return pick(zh, "card", "卡片")
	}
	return string(o)
}

func pick(zh bool, en, zhText string) string {
	if zh {
		return zhText
	}
	return en
}

func helpText(zh bool) string {
	if zh {
		return "我是 LinkBot，按 2021 年微信的规则显示每个链接：屏蔽、纯链接或卡片。命令：" +
			"/help 帮助；/era 查看时期；/era ID 或 /era 2021-10-01 切换时期；" +
			"/why 解释上一条带链接的消息；/stats 本群链接统计；/walkthrough 按时间线演示各时期（/walkthrough 10 每步停 10 秒）。"
	}
	return "I am LinkBot: I show every link the way WeChat showed rivals' links in 2021 — blocked, " +
		"a bare hyperlink, or a card. Commands: /help; /era shows the era; /era ID or /era 2021-10-01 " +
		"changes it; /why explains the last message with links; /stats counts this room's links; " +
		"/walkthrough replays every era (/walkthrough 10 pauses 10 s at each)."
}

func eraName(e bot.Era, zh bool) string {
	if zh && e.NameZh != "" {
		return e.NameZh
	}
	if e.Name != "" {
		return e.Name
	}
	return e.ID
}

// eraLabel is the name of the era with id, as the page shows it; the id
// itself for an era the policy no longer has.
func (s *Server) eraLabel(id string, zh bool) string {
	if e, err := s.bot.Policy().ResolveEra(id); err == nil {
		return eraName(e, zh)
	}
	return id
}

func eraSummary(e bot.Era, zh bool) string {
	if zh && e.SummaryZh != "" {
		return e.SummaryZh
	}
	return e.Summary
}

func (s *Server) eraText(current string, zh bool) string {
	var b strings.Builder
	p := s.bot.Policy()
	name := current
	if e, err := p.ResolveEra(current); err == nil {
		name = eraName(e, zh) + " (" + e.ID + ")"
	}
	b.WriteString(pick(zh, "This room's era: ", "本聊天当前时期：") + name + pick(zh, ". Eras: ", "。所有时期："))
	// Names as the page shows them; the ids are what /era ID takes.
	for i, e := range p.Eras() {
		if i > 0 {
			b.WriteString(pick(zh, "; ", "；"))
		}
		detail := e.ID
		if e.From != "" {
			detail += pick(zh, ", from "+e.From, "，自 "+e.From+" 起")
		}
		b.WriteString(eraName(e, zh) + pick(zh, " ("+detail+")", "（"+detail+"）"))
	}
	return b.String()
}

func eraChangedText(lang, by string, e bot.Era) string {
	zh := lang == "zh"
	text := pick(zh, by+" set the era to ", by+" 将时期切换为 ") + eraName(e, zh) + " (" + e.ID + ")"
	if sum := eraSummary(e, zh); sum != "" {
		text += pick(zh, ": ", "：") + sum
	}
	return text
}

// whyText explains the links of the last message with links: a person's,
// under the room's current era, or a walkthrough sample, under its own.
func (s *Server) whyText(ctx context.Context, r *Request, zh bool) (string, error) {
	after := max(r.Message.Seq-maxWhyLookback, 0)
	msgs, err := s.store.Messages(ctx, r.Room.ID, after, maxWhyLookback)
	if err != nil {
		return "", err
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		m := &msgs[i]
		if m.System {
			continue
		}
		s.render(ctx, &r.Room, m)
		if len(m.Links) == 0 {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, pick(zh, "%s's last message with links, under %s:", "%s 最近一条含链接的消息，时期：%s。"), m.Sender.Name, s.eraLabel(m.Era, zh))
		for _, l := range m.Links {
			reason := l.Reason
			if zh && l.ReasonZh != "" {
				reason = l.ReasonZh
			}
			fmt.Fprintf(&b, pick(zh, "\n• %s (%s) → %s: %s", "\n• %s（%s）→ %s：%s"), l.URL, s.platformName(l.Platform, zh), outcomeWord(l.Outcome, zh), reason)
			if l.Since != "" && !strings.Contains(reason, l.Since) {
				fmt.Fprintf(&b, pick(zh, " (since %s)", "（自 %s 起）"), l.Since)
			}
			if l.Source != "" {
				fmt.Fprintf(&b, pick(zh, " Source: %s", " 来源：%s"), l.Source)
			}
		}
		return b.String(), nil
	}
	return pick(zh, "No recent message has links.", "最近的消息里没有链接。"), nil
}

// Stats counts a room's links per platform and outcome.
type Stats struct {
	Stats    []StatsEntry `json:"stats"`
	Links    int          `json:"links"`
	Messages int          `json:"messages"`
	// Samples counts the links of LinkBot's walkthrough samples among
	// Links: each as the era it illustrates shows it, not the room's.
	Samples int `json:"samples"`
}

// StatsEntry is one platform × outcome count.
type StatsEntry struct {
	Platform string      `json:"platform"`
	Outcome  bot.Outcome `json:"outcome"`
	Count    int         `json:"count"`
}

// roomStats counts the links as the room shows them: people's messages
// re-evaluated under the room's current era, LinkBot's walkthrough samples
// as posted; up to maxStatsMessages. LinkBot's replies have no links.
func (s *Server) roomStats(ctx context.Context, room *chat.Room) (Stats, error) {
	type key struct {
		platform string
		outcome  bot.Outcome
	}
	counts := make(map[key]int)
	st := Stats{Stats: []StatsEntry{}}
	last, err := s.lastSeq(ctx, room.ID)
	if err != nil {
		return Stats{}, err
	}
	// The last maxStatsMessages, not the first: a long-lived room's stats
	// must show what it holds now.
	for after, seen := max(last-maxStatsMessages, 0), 0; seen < maxStatsMessages; {
		msgs, err := s.store.Messages(ctx, room.ID, after, maxPageSize)
		if err != nil {
			return Stats{}, err
		}
		for i := range msgs {
			m := &msgs[i]
			after = m.Seq
			seen++
			if m.System || (m.Sender.Bot && len(m.Links) == 0) {
				continue
			}
			st.Messages++
			s.render(ctx, room, m)
			for _, l := range m.Links {
				counts[key{l.Platform, l.Outcome}]++
				st.Links++
				if m.Sender.Bot {
					st.Samples++
				}
			}
		}
		if len(msgs) < maxPageSize {
			break
		}
	}
	for k, n := range counts {
		st.Stats = append(st.Stats, StatsEntry{k.platform, k.outcome, n})
	}
	slices.SortFunc(st.Stats, func(a, b StatsEntry) int {
		return cmp.Or(cmp.Compare(a.Platform, b.Platform), cmp.Compare(a.Outcome, b.Outcome))
	})
	return st, nil
}

// lastSeq returns the seq of the room's newest message (0: none). The
// store has no call for it, but seqs have no gaps: a search for the first
// seq with nothing after it takes about 2·log2(seq) one-message reads.
func (s *Server) lastSeq(ctx context.Context, roomID string) (int64, error) {
	exists := func(seq int64) (bool, error) { // a message with seq or a later one
		msgs, err := s.store.Messages(ctx, roomID, seq-1, 1)
		return len(msgs) > 0, err
	}
	// lo ≤ last < hi.
	lo, hi := int64(0), int64(1)
	for {
		more, err := exists(hi)
		if err != nil {
			return 0, err
		}
		if !more {
			break
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		more, err := exists(mid)
		if err != nil {
			return 0, err
		}
		if more {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

func (s *Server) statsText(st Stats, zh bool) string {
	if st.Links == 0 {
		return fmt.Sprintf(pick(zh, "%d messages, no links yet.", "%d 条消息，还没有链接。"), st.Messages)
	}
	var b strings.Builder
	fmt.Fprintf(&b, pick(zh, "%d links in %d messages:", "%[2]d 条消息中共 %[1]d 个链接："), st.Links, st.Messages)
	for _, e := range st.Stats {
		fmt.Fprintf(&b, pick(zh, "\n• %s, %s: %d", "\n• %s，%s：%d"), s.platformName(e.Platform, zh), outcomeWord(e.Outcome, zh), e.Count)
	}
	return b.String()
}

// walkthroughSamples are the links LinkBot posts in every era of the
// walkthrough: a Taobao share text, a Douyin link, a JD link, a Pinduoduo link.
const walkthroughSamples = "【淘宝】限时特惠 ￥AbCd1234XyZ￥ https://m.tb.cn/h.5Zq8Lmn 打开手机淘宝即可查看\n" +
	"抖音 https://v.douyin.com/iRNBho6/\n" +
	"京东 https://item.jd.com/100012043978.html\n" +
	"拼多多 https://mobile.yangkeduo.com/goods.html?goods_id=215283740"

// walkthroughStep is a walkthrough's pause between eras of secs seconds,
// if it is within bounds: a class may need longer than the default to
// read each era.
func walkthroughStep(secs int64) (time.Duration, error) {
	if secs < int64(minWalkthroughStep/time.Second) || secs > int64(maxWalkthroughStep/time.Second) {
		return 0, chat.Errorf(chat.EInvalid, "the pause between eras must be a whole number of seconds from %.0f to %.0f",
			minWalkthroughStep.Seconds(), maxWalkthroughStep.Seconds())
	}
	return time.Duration(secs) * time.Second, nil
}

// startWalkthrough plays the classroom scenario in room, one era per step,
// pausing step between eras (0: the server's --walkthrough-step). One
// walkthrough runs per room at a time.
func (s *Server) startWalkthrough(room chat.Room, step time.Duration) error {
	if step == 0 {
		step = s.step
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return chat.Errorf(chat.EUnavailable, "server is shutting down")
	}
	if s.walking[room.ID] {
		return chat.Errorf(chat.EConflict, "a walkthrough is already running in this room")
	}
	s.walking[room.ID] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.walking, room.ID)
			s.mu.Unlock()
		}()
		if err := s.walkthrough(s.bgCtx, room, step); err != nil && s.bgCtx.Err() == nil {
			s.log.Warn("walkthrough stopped", zap.String("room", room.ID), zap.Error(err))
		}
	}()
	return nil
}

func (s *Server) walkthrough(ctx context.Context, room chat.Room, step time.Duration) error {
	zh := room.Lang == "zh"
	eras := s.bot.Policy().Eras()
	start := room.Era
	for i, e := range eras {
		updated, err := s.moveRoomEra(ctx, room.ID, e.ID)
		if err != nil {
			return err
		}
		room = updated
		line := fmt.Sprintf(pick(zh, "Walkthrough %d/%d — %s", "演示 %d/%d — %s"), i+1, len(eras), eraName(e, zh))
		if e.From != "" {
			line += pick(zh, " (from "+e.From+")", "（自 "+e.From+" 起）")
		}
		if sum := eraSummary(e, zh); sum != "" {
			line += pick(zh, ": ", "：") + sum
		}
		if err := s.botPost(ctx, &room, line, false); err != nil {
			return err
		}
		// The same links as each chat kind shows them in this era, whatever
		// the room's own kind: the eras differ by chat kind.
		for _, kind := range []struct {
			chat   bot.Chat
			en, zh string
		}{{bot.Direct, "In a one-to-one chat:", "单聊中："}, {bot.Group, "In a group chat:", "群聊中："}} {
			sample, err := s.botSample(ctx, &room, pick(zh, kind.en, kind.zh)+"\n"+walkthroughSamples, kind.chat)
			if err != nil {
				return err
			}
			if hasBlocked(sample.Links) {
				if err := s.botPost(ctx, &room, s.blockedNotice(room.Lang), true); err != nil {
					return err
				}
			}
		}
		if step > 0 && i < len(eras)-1 {
			t := time.NewTimer(step)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	// The room goes back to where it was: the walkthrough ends in the
	// hypothetical era, which must not silently decide what comes next.
	if room.Era != start {
		updated, err := s.moveRoomEra(ctx, room.ID, start)
		if err != nil {
			return err
		}
		room = updated
	}
	name := s.eraLabel(start, zh)
	return s.botPost(ctx, &room, pick(zh, "Walkthrough done; the room is back in "+name+". /era ID switches to any era.",
		"演示结束，本聊天已回到「"+name+"」时期。用 /era ID 切换到任一时期。"), false)
}
