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
