package sqlite

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
)

func benchStore(b *testing.B, sync string) (*Store, chat.User) {
	b.Helper()
	s, err := open(context.Background(), b.TempDir(), zap.NewNop(), options{sync: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, chattest.NewUser(b, s, "alice", 0)
}

// benchLinks is what a typical message with links carries.
var benchLinks = []bot.Link{
	{URL: "https://m.tb.cn/h.AbCd", Kind: "url", Platform: "taobao", Owner: "Alibaba", Category: "ecommerce",
		Outcome: bot.Blocked, Rule: "taobao-blocked", Reason: "Taobao links were blocked", ReasonZh: "淘宝链接被屏蔽", Since: "2013-11-01"},
	{URL: "https://item.jd.com/100012043978.html", Kind: "url", Platform: "jd", Owner: "JD.com", Category: "ecommerce",
		Outcome: bot.CardView, Rule: "jd-card", Card: &bot.Card{Title: "Phone", Price: "¥1999", SiteName: "JD", URL: "https://item.jd.com/100012043978.html"}},
}

// BenchmarkAppend is one caller at a time: every append pays a full commit.
func BenchmarkAppend(b *testing.B) {
	for _, sync := range []string{syncNormal, syncFull} {
		b.Run("sync="+sync, func(b *testing.B) {
			s, alice := benchStore(b, sync)
			room := chattest.NewGroup(b, s, "g", alice.ID).ID
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				m := chattest.Msg(room, alice, "hello https://m.tb.cn/h.AbCd")
				m.Links = benchLinks
				m.ClientMsgID = fmt.Sprint(i)
				if _, _, err := s.Append(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendParallel is many senders over several rooms, the case
// group commit is for. 32×GOMAXPROCS goroutines stand for that many
// connections waiting on their acknowledgement.
func BenchmarkAppendParallel(b *testing.B) {
	for _, sync := range []string{syncNormal, syncFull} {
		b.Run("sync="+sync, func(b *testing.B) {
			s, alice := benchStore(b, sync)
			const nRooms = 8
			rooms := make([]string, nRooms)
			for i := range rooms {
				rooms[i] = chattest.NewGroup(b, s, fmt.Sprint("g", i), alice.ID).ID
			}
			ctx := context.Background()
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					m := chattest.Msg(rooms[i%nRooms], alice, "hello https://m.tb.cn/h.AbCd")
					m.Links = benchLinks
					m.ClientMsgID = fmt.Sprint(i)
					if _, _, err := s.Append(ctx, m); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkMessages1000 reads one page of 1000 messages with links, what a
// client resuming a busy room asks for.
func BenchmarkMessages1000(b *testing.B) {
	s, alice := benchStore(b, defaultSync)
	room := chattest.NewGroup(b, s, "g", alice.ID).ID
	ctx := context.Background()
	for i := range 1000 {
		m := chattest.Msg(room, alice, fmt.Sprintf("message %d https://m.tb.cn/h.AbCd https://item.jd.com/100012043978.html", i))
		m.Links = benchLinks
		if _, _, err := s.Append(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		ms, err := s.Messages(ctx, room, 0, 1000)
		if err != nil || len(ms) != 1000 {
			b.Fatalf("Messages = %d, %v", len(ms), err)
		}
	}
}
