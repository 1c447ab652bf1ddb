// i18n.js — every UI string of the page in English and Simplified Chinese.
// Data from the server (names, messages, reasons) is never looked up here.

const STORAGE_KEY = "linkwall.lang";

const strings = {
  en: {
    appName: "linkwall",
    tagline: "A chat that shows how WeChat rendered rivals' links in 2021.",
    joinTitle: "Join the chat",
    joinName: "Your name",
    joinPlaceholder: "e.g. Alice",
    joinButton: "Join",
    joinEmpty: "Please enter a name.",
    roomUnavailable: "That chat does not exist, or you are not in it.",
    textTooLong: "Too long: {n} of {max} characters. Shorten it to send it.",
    langToggle: "中文",
    langToggleLabel: "Switch language to Simplified Chinese",
    chats: "Chats",
    noChats: "No chats yet. Start one with a person, create a group, or run the classroom walkthrough.",
    newChat: "New chat",
    newGroup: "New group",
    walkthrough: "Walkthrough",
    walkthroughLabel: "Run the classroom walkthrough in a new group",
    walkthroughName: "Walkthrough {time}",
    walkthroughStarted: "Walkthrough started: LinkBot will step through every era.",
    logout: "Log out",
    switchPerson: "Join as someone else (this tab only)",
    you: "You",
    signedInAs: "Signed in as {name}",
    back: "Back to chats",
    selectChat: "Select a chat, or start a new one.",
    typeMessage: "Type a message",
    send: "Send",
    sending: "Sending…",
    failed: "Not sent — tap to retry",
    retry: "Retry",
    reconnecting: "Reconnecting…",
    tooManyConnections: "This person has too many tabs or devices connected; close one and this page reconnects.",
    offline: "Connection lost. Reconnecting…",
    direct: "One-to-one chat",
    group: "Group chat",
    members: "{n} members",
    memberOne: "1 member",
    bot: "Bot",
    system: "System notice",
    noMessages: "No messages yet. Say hello, or paste a Taobao, Douyin or JD link.",
    unread: "{n} unread",
    // eras
    era: "Era",
    eraButton: "Era: {name}",
    eraTimeline: "Era timeline",
    eraIntro: "Pick an era: the whole conversation is shown again as WeChat would have rendered it then. Everyone in the chat sees the change.",
    shownUnder: "Shown under era “{name}”",
    eraFrom: "from {date}",
    eraAlways: "before {date}",
    hypothetical: "hypothetical",
    current: "current",
    eraChanged: "Era changed to “{name}”.",
    // links
    why: "Why?",
    whyTitle: "Why is this link {outcome}?",
    rule: "Rule",
    reason: "Reason",
    since: "Since",
    sinceAlways: "always",
    sinceHypothetical: "never: a hypothetical era",
    source: "Source",
    outcome_blocked: "blocked",
    outcome_hyperlink: "a bare hyperlink",
    outcome_card: "a card",
    outcomeShort_blocked: "Blocked",
    outcomeShort_hyperlink: "Hyperlink",
    outcomeShort_card: "Card",
    blockedNote: "Link blocked. To browse, press and hold the address to copy it, then open it in a browser.",
    blockedTitle: "This page can't be opened here",
    blockedBody: "To browse, press and hold the address to copy it, then open it in a browser.",
    address: "Address",
    copy: "Copy",
    copied: "Copied",
    copyFailed: "Select the address and copy it by hand.",
    loginTitle: "Log in to {platform} first",
    loginBody: "This link is shown only as a bare hyperlink: no picture, no title, no price. To see what it points to, open it and sign in to {platform} with your own account.",
    externalTitle: "Leaving the chat",
    externalBody: "This link opens a web page outside the chat.",
    openAnyway: "Open anyway",
    cancel: "Cancel",
    close: "Close",
    otherSite: "other site",
    token: "Taobao share token",
    linksTruncated: "Too many links: only the first ones were checked.",
    // dialogs
    newChatTitle: "Start a one-to-one chat",
    noUsers: "Nobody else has joined yet. Open this page in another browser window and join with another name.",
    newGroupTitle: "Create a group",
    groupName: "Group name",
    groupMembers: "Members",
    groupLang: "LinkBot's language",
    create: "Create",
    groupNameMissing: "Please enter a group name.",
    langEn: "English",
    langZh: "简体中文",
    roomLang: "LinkBot answers in {lang}",
    roomLangSwitch: "Make LinkBot answer in {lang} for everyone in this chat",
    langNameEn: "English",
    langNameZh: "Chinese",
    // traffic
    traffic: "Traffic",
    trafficTitle: "Links in this chat",
    trafficIntro: "Links posted per platform and outcome, under the current era.",
    platform: "Platform",
    total: "Total",
    noLinks: "No links posted in this chat yet.",
    preview: "Preview",
    previewLabel: "Preview: how a link renders in every era, without posting it",
    previewTitle: "How would it render?",
    previewIntro: "Paste a link or a share text; nothing is posted. Each cell is one era and chat kind: pick one to see the message as it would show.",
    previewText: "Text with links",
    previewNoLinks: "no links",
    previewFailed: "The preview could not be updated; edit the text to try again.",
    tokenShort: "token",
    samplesNote: "{n} of the links are LinkBot's walkthrough samples, each counted as the era it illustrates shows it.",
    statsSummary: "{links} in {messages}",
    statsLinks: "{n} links",
    statsLinkOne: "1 link",
    statsMessages: "{n} messages",
    statsMessageOne: "1 message",
    arithmetic: "The 12-million estimate",
    mau: "Monthly active users",
    mauHint: "{n} people",
    shareRate: "Share rate (%)",
    pageViews: "Extra page views",
    arithmeticNote: "1.25 billion monthly active users × 1 % = 12.5 million page views; the economist Pan Helin, quoted by Economic Daily, put it at 12 million.",
    // errors
    errorGeneric: "Something went wrong: {message}",
    errorNetwork: "The server cannot be reached.",
    code_invalid: "The input is not valid",
    code_unauthorized: "Your sign-in has expired; join again",
    code_forbidden: "You are not a member of this chat, or may not do this",
    code_not_found: "No such user, chat or era",
    code_conflict: "This cannot be done now (for example while a demo runs)",
    code_too_large: "Too long: over the limit",
    code_rate_limited: "Too many messages; try again shortly",
    code_unavailable: "The service is unavailable for now; try again shortly",
    code_internal: "The server failed; try again shortly",
    newMessage: "New message from {name}: {text}",
  },
  zh: {
    appName: "linkwall",
    tagline: "重现 2021 年微信如何显示竞争对手链接的聊天演示。",
    joinTitle: "加入聊天",
    joinName: "你的名字",
    joinPlaceholder: "例如：小明",
    joinButton: "加入",
    joinEmpty: "请输入名字。",
    roomUnavailable: "该聊天不存在，或你不在其中。",
    textTooLong: "太长：{n} 个字符，上限 {max}。请删减后再发送。",
    langToggle: "EN",
    langToggleLabel: "Switch language to English",
    chats: "聊天",
    noChats: "还没有聊天。可以和某人单聊、创建群聊，或运行课堂演示。",
    newChat: "发起单聊",
    newGroup: "创建群聊",
    walkthrough: "课堂演示",
    walkthroughLabel: "在新群聊中运行课堂演示",
    walkthroughName: "课堂演示 {time}",
    walkthroughStarted: "课堂演示已开始：LinkBot 将逐一演示每个时期。",
    logout: "退出",
    switchPerson: "以其他身份加入（仅此标签页）",
    you: "我",
    signedInAs: "当前用户：{name}",
    back: "返回聊天列表",
    selectChat: "选择一个聊天，或发起新的聊天。",
    typeMessage: "输入消息",
    send: "发送",
    sending: "发送中…",
    failed: "发送失败，点击重试",
    retry: "重试",
    reconnecting: "正在重新连接…",
    tooManyConnections: "此用户打开的标签页或设备太多；关闭一个后本页会自动重新连接。",
    offline: "连接已断开，正在重新连接…",
    direct: "单聊",
    group: "群聊",
    members: "{n} 位成员",
    memberOne: "1 位成员",
    bot: "机器人",
    system: "系统提示",
    noMessages: "还没有消息。打个招呼，或者粘贴淘宝、抖音、京东链接试试。",
    unread: "{n} 条未读",
    era: "时期",
    eraButton: "时期：{name}",
    eraTimeline: "时间线",
    eraIntro: "选择一个时期：整段对话会按当时微信的显示方式重新呈现。群里每个人都会看到这一变化。",
    shownUnder: "当前按“{name}”时期显示",
    eraFrom: "自 {date} 起",
    eraAlways: "{date} 之前",
    hypothetical: "假设",
    current: "当前",
    eraChanged: "时期已切换为“{name}”。",
    why: "为什么？",
    whyTitle: "为什么这个链接{outcome}？",
    rule: "规则",
    reason: "原因",
    since: "生效日期",
    sinceAlways: "一直如此",
    sinceHypothetical: "从未生效：假设的时期",
    source: "来源",
    outcome_blocked: "被屏蔽",
    outcome_hyperlink: "只显示为纯文本链接",
    outcome_card: "显示为卡片",
    outcomeShort_blocked: "屏蔽",
    outcomeShort_hyperlink: "纯链接",
    outcomeShort_card: "卡片",
    blockedNote: "链接已被屏蔽。如需浏览，请长按网址复制后使用浏览器访问",
    blockedTitle: "已停止访问该网页",
    blockedBody: "如需浏览，请长按网址复制后使用浏览器访问。",
    address: "网址",
    copy: "复制",
    copied: "已复制",
    copyFailed: "请手动选中网址并复制。",
    loginTitle: "请先登录{platform}",
    loginBody: "该链接仅以纯文本链接显示：没有图片、标题和价格。需要先在{platform}登录自己的账号，才能看到任何内容。",
    externalTitle: "即将离开聊天",
    externalBody: "该链接将打开聊天之外的网页。",
    openAnyway: "仍然打开",
    cancel: "取消",
    close: "关闭",
    otherSite: "其他网站",
    token: "淘宝口令",
    linksTruncated: "链接过多：只检查了前面的链接。",
    newChatTitle: "发起单聊",
    noUsers: "还没有其他人加入。请在另一个浏览器窗口打开本页，用另一个名字加入。",
    newGroupTitle: "创建群聊",
    groupName: "群名称",
    groupMembers: "成员",
    groupLang: "LinkBot 使用的语言",
    create: "创建",
    groupNameMissing: "请输入群名称。",
    langEn: "English",
    langZh: "简体中文",
    roomLang: "LinkBot 使用{lang}回复",
    roomLangSwitch: "让 LinkBot 在此聊天中对所有人改用{lang}回复",
    langNameEn: "英文",
    langNameZh: "中文",
    traffic: "流量",
    trafficTitle: "本聊天中的链接",
    trafficIntro: "按平台和显示方式统计的链接数（按当前时期计算）。",
    platform: "平台",
    total: "合计",
    noLinks: "本聊天中还没有链接。",
    preview: "预览",
    previewLabel: "预览：链接在各个时期如何显示，不会发送",
    previewTitle: "会如何显示？",
    previewIntro: "粘贴链接或分享文本，不会发送到任何聊天。每格对应一个时期和一种聊天：点选即可看到消息的样子。",
    previewText: "含链接的文本",
    previewNoLinks: "没有链接",
    previewFailed: "预览未能更新；修改文本后重试。",
    tokenShort: "口令",
    samplesNote: "其中 {n} 个链接来自 LinkBot 的课堂演示示例，按各自所演示的时期计数。",
    statsSummary: "{messages}中共 {links}",
    statsLinks: "{n} 个链接",
    statsLinkOne: "1 个链接",
    statsMessages: "{n} 条消息",
    statsMessageOne: "1 条消息",
    arithmetic: "1200 万次浏览的估算",
    mau: "月活跃用户",
    mauHint: "{n} 人",
    shareRate: "分享比例（%）",
    pageViews: "新增浏览量",
    arithmeticNote: "12.5 亿月活用户 × 1% = 1250 万次浏览；《经济日报》引述经济学家盘和林的估算为 1200 万。",
    errorGeneric: "出错了：{message}",
    errorNetwork: "无法连接服务器。",
    newMessage: "{name} 发来新消息：{text}",
    // The server explains its errors in English; the page names them by code.
    code_invalid: "输入有误",
    code_unauthorized: "登录已失效，请重新加入",
    code_forbidden: "你不是这个聊天的成员，或无权这样做",
    code_not_found: "找不到该用户、聊天或时期",
    code_conflict: "现在不能这样做（例如演示正在进行）",
    code_too_large: "内容太长，超出了限制",
    code_rate_limited: "发送太频繁，请稍后再试",
    code_unavailable: "服务暂时不可用，请稍后再试",
    code_internal: "服务器出错了，请稍后再试",
  },
};

/**
 * serverError is the text for an error the server reported with code and
 * its English message: in English the message itself (the code's text when
 * there is none), in Chinese the code's own text with the message beside it.
 */
export function serverError(code, message) {
  const own = strings[lang][`code_${code}`];
  if (lang !== "zh") return message || own || code || "";
  if (!own) return message || code || "";
  return message ? `${own}（${message}）` : own;
}

let lang = initialLang();

function initialLang() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled; fall back to the browser's language.
  }
  if (saved === "en" || saved === "zh") return saved;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
}

/** The current UI language: "en" or "zh". */
export function getLang() {
  return lang;
}

/** Switches the UI language and remembers it. */
export function setLang(l) {
  lang = l === "zh" ? "zh" : "en";
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Not remembered, but still applied.
  }
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

/** t returns the string for key, with {name} placeholders filled from vars. */
export function t(key, vars) {
  const s = strings[lang][key] ?? strings.en[key] ?? key;
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

/** locale is the BCP 47 tag for number and date formatting. */
export function locale() {
  return lang === "zh" ? "zh-CN" : "en-GB";
}

document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
