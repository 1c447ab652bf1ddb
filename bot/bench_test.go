package bot

import (
	"context"
	"testing"
)

// benchMessage is a 200-byte Chinese chat message holding a Taobao share
// link, the common case the bot sees.
const benchMessage = "亲，这条裙子今天打五折，快看【淘宝】https://m.tb.cn/h.5FgH2Jk?tk=AbCd1234「夏季新款连衣裙」点击链接直接打开，或者淘宝搜索直接打开！喜欢就买吧 ok!!!!"

func TestBenchMessageSize(t *testing.T) {
	if n := len(benchMessage); n != 200 {
		t.Fatalf("benchMessage is %d bytes, want 200", n)
	}
}

func BenchmarkExtract(b *testing.B) {
	p, x := DefaultPolicy(), NewExtractor()
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	for b.Loop() {
		found, _ := x.Extract(p, benchMessage)
		if len(found) != 1 {
			b.Fatalf("found %d links", len(found))
		}
	}
}

func BenchmarkDecideLink(b *testing.B) {
	p := DefaultPolicy()
	f := Found{URL: "https://m.tb.cn/h.5FgH2Jk", Kind: KindURL, Host: "m.tb.cn", Platform: "taobao"}
	b.ReportAllocs()
	for b.Loop() {
		if l := p.Decide(f, Group, "group-ecommerce"); l.Outcome != Hyperlink {
			b.Fatal(l.Outcome)
		}
	}
}

func BenchmarkBotDecide(b *testing.B) {
	bot := New(nil, nil)
	ctx := context.Background()
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	for b.Loop() {
		bot.Decide(ctx, benchMessage, Group, "group-ecommerce")
	}
}

// benchMessages are other shapes of 200-byte messages: plain chat without
// links (the most common), and links that need xurls' regular expression
// (parentheses, a scheme-less registry domain with trailing punctuation).
var benchMessages = map[string]string{
	"no-links": "今天下午三点在会议室开会，请大家准时参加。会议主要讨论下个季度的产品计划和市场推广方案。如果有问题请提前联系我，谢谢大家的配合！收到请回复",
	"regexp":   "这个好看(https://example.com/a_(b))，还有淘宝taobao.com/item/65x.！京东https://item.jd.com/100012043978.html，快来看看吧，今天下午三点之前下单有优惠，亲们别错过啦，好",
}

func BenchmarkExtractShapes(b *testing.B) {
	p, x := DefaultPolicy(), NewExtractor()
	for name, msg := range benchMessages {
		b.Run(name, func(b *testing.B) {
			if len(msg) < 190 || len(msg) > 210 {
				b.Fatalf("message is %d bytes, want about 200", len(msg))
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				x.Extract(p, msg)
			}
		})
	}
}
