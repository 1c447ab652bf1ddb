package bot_test

import (
	"context"
	"fmt"

	"github.com/linkwall/linkwall/bot"
)

func Example() {
	b := bot.New(bot.DefaultPolicy(), nil)
	res := b.Decide(context.Background(), "【淘宝】https://m.tb.cn/h.5FgH2Jk?tk=AbCd1234 点击链接直接打开", bot.Group, "walled")
	for _, l := range res.Links {
		fmt.Println(l.Platform, l.Outcome, l.Rule)
	}
	era, _ := b.Policy().ResolveEra("2021-12-01")
	res = b.Decide(context.Background(), "【淘宝】https://m.tb.cn/h.5FgH2Jk?tk=AbCd1234 点击链接直接打开", bot.Group, era.ID)
	for _, l := range res.Links {
		fmt.Println(l.Platform, l.Outcome, l.Rule, l.LoginRequired)
	}
	// Output:
	// taobao blocked rival-blocked
	// taobao hyperlink group-ecommerce-trial true
}
