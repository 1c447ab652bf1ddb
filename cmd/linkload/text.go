package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// The message mix: what a class or a family group actually posts — chatter,
// and share texts copied out of the shopping and video apps, whose links
// the bot has to find and decide.
var plainTexts = []string{
	"good morning everyone",
	"今天的作业是什么？",
	"see you at three, room 204",
	"这个周末有人去爬山吗",
	"did anyone read chapter 4 yet?",
	"谢谢老师！",
	"I'll bring the slides tomorrow",
	"收到，马上到",
	"can someone share the notes from Monday",
	"哈哈哈哈笑死我了",
}

var shareNames = []string{"小李", "王老师", "阿华", "美食探店", "旅行日记"}

const alnum = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

func randCode(r *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(alnum[r.IntN(len(alnum))])
	}
	return b.String()
}

// mixText returns one message body: half plain chatter, half share texts
// with Taobao (token + short link), Douyin, JD and Pinduoduo links.
func mixText(r *rand.Rand) string {
	switch p := r.IntN(100); {
	case p < 50:
		return plainTexts[r.IntN(len(plainTexts))]
	case p < 70:
		tk := randCode(r, 8)
		return "【淘宝】https://m.tb.cn/h." + randCode(r, 6) + " ￥" + tk + "￥ 复制打开，直接查看宝贝"
	case p < 85:
		return fmt.Sprintf("%d.%02d 复制打开抖音，看看【%s的作品】今天这家店真的绝了 https://v.douyin.com/%s/",
			r.IntN(9)+1, r.IntN(100), shareNames[r.IntN(len(shareNames))], randCode(r, 7))
	case p < 95:
		return "【京东】https://item.jd.com/" + strconv.Itoa(100000000+r.IntN(900000000)) + ".html 京东好物，限时特价"
	default:
		return "【拼多多】https://mobile.yangkeduo.com/goods.html?goods_id=" + strconv.Itoa(r.IntN(1<<30)) + " 帮我砍一刀"
	}
}
