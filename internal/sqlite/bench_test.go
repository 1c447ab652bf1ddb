package sqlite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
	"github.com/linkwall/linkwall/internal/cputime"
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

// BenchmarkAppendChat is the store's share of linkload's mix: 200 senders
// (one goroutine each, waiting on its acknowledgement as a connection
// does) in 2 rooms of 100, each with its own client_msg_ids, and the links
// the default policy gives linkload's share texts, reasons and all. cpu-ns/op
// is the process's CPU time per append (user + system, fsync included):
// under load the writer's CPU, not the disk's latency, is what the
// fan-out competes with.
func BenchmarkAppendChat(b *testing.B) {
	// busy: every sender has a message waiting (batches of maxBatch);
	// paced: 8 at a time, the small commits of a few thousand msgs/s.
	for _, c := range []struct {
		name    string
		waiting int
	}{{"busy", 200}, {"paced", 8}} {
		b.Run(c.name, func(b *testing.B) { benchAppendChat(b, c.waiting) })
	}
}

func benchAppendChat(b *testing.B, waiting int) {
	s, _ := benchStore(b, syncFull)
	ctx := context.Background()
	const nRooms, perRoom = 2, 100
	type sender struct {
		u    chat.User
		room string
	}
	var senders []sender
	for r := range nRooms {
		var ids []string
		var us []chat.User
		for i := range perRoom {
			u := chattest.NewUser(b, s, fmt.Sprintf("u%d-%d", r, i), r*perRoom+i)
			us = append(us, u)
			ids = append(ids, u.ID)
		}
		room := chattest.NewGroup(b, s, fmt.Sprint("g", r), ids...).ID
		for _, u := range us {
			senders = append(senders, sender{u, room})
		}
	}
	bt := bot.New(bot.DefaultPolicy(), zap.NewNop())
	texts := []string{
		"good morning everyone",
		"【淘宝】https://m.tb.cn/h.AbCdEf ￥AbCd1234￥ 复制打开，直接查看宝贝",
		"今天的作业是什么？",
		"3.14 复制打开抖音，看看【小李的作品】今天这家店真的绝了 https://v.douyin.com/AbCdEfG/",
		"【京东】https://item.jd.com/100012345.html 京东好物，限时特价",
	}
	links := make([][]bot.Link, len(texts))
	for i, t := range texts {
		links[i] = bt.Decide(ctx, t, bot.Group, "group-ecommerce").Links
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cputime.Process()
	slots := make(chan struct{}, waiting)
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			snd := senders[i]
			for {
				slots <- struct{}{}
				n := next.Add(1)
				if n > int64(b.N) {
					<-slots
					return
				}
				m := chattest.Msg(snd.room, snd.u, texts[n%int64(len(texts))])
				m.Links = links[n%int64(len(texts))]
				m.ClientMsgID = fmt.Sprintf("run-%d-%d", i%nRooms, n)
				_, _, err := s.Append(ctx, m)
				<-slots
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
}
