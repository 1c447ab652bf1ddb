// app.js — the linkwall browser demo: join, chat list, conversation, eras,
// explanations, traffic panel and the classroom walkthrough, over API v1.
// All data from the server is rendered as text (see dom.js).

import { api, allMessages, APIError, tabToken } from "./api.js";
import { Socket, TOO_MANY_CONNECTIONS } from "./ws.js";
import { h, clear, isWebURL } from "./dom.js";
import { icon } from "./icons.js";
import { t, getLang, setLang, locale, serverError } from "./i18n.js";
import { openModal, closeModal } from "./modal.js";
import { messageElement, timeSeparator, avatar, formatTime, siteName } from "./render.js";

const SEPARATOR_GAP_MS = 5 * 60 * 1000; // a time separator after this much silence, as in WeChat
// The composer and the join form stop at the server's default limits
// (internal/server/limits.go); the server enforces its own anyway.
const MAX_TEXT = 4000;
const MAX_NAME = 32;

// charLimit bounds a text field to max characters as the server counts
// them (code points). The maxlength attribute counts UTF-16 units, so an
// emoji would count twice: it is only the outer bound, and an input
// handler cuts what is longer.
function charLimit(max) {
  return {
    maxlength: String(2 * max),
    oninput: (e) => {
      const el = e.target;
      const chars = [...el.value];
      if (chars.length > max) el.value = chars.slice(0, max).join("");
    },
  };
}
// textLimit is charLimit for message texts, which are not cut: a paste
// cut short would lose its end silently, often a link. A text over max
// characters gets a counter after its field ("4,030 / 4,000") and is
// marked invalid.
function textLimit(max) {
  return { dataset: { max: String(max) }, oninput: (e) => showTextLength(e.target) };
}

// showTextLength shows or hides el's counter and reports whether its text
// is too long to send.
function showTextLength(el) {
  const max = Number(el.dataset.max);
  const n = [...el.value.trim()].length; // as it is sent
  const over = n > max;
  el.setAttribute("aria-invalid", String(over));
  let counter = el.nextElementSibling;
  if (!counter || !counter.classList.contains("char-count")) counter = null;
  if (!over) {
    if (counter) counter.remove();
    el.removeAttribute("aria-describedby");
    return false;
  }
  if (!counter) {
    // role=status, not alert: it changes with every key while over.
    counter = h("p", { class: "char-count form-error", role: "status", id: `${el.id || el.className}-count` });
    el.after(counter);
  }
  const nf = new Intl.NumberFormat(getLang() === "zh" ? "zh-CN" : "en");
  counter.textContent = t("textTooLong", { n: nf.format(n), max: nf.format(max) });
  el.setAttribute("aria-describedby", counter.id);
  return true;
}

// PREVIEW_SAMPLE is what the preview starts with: the README tour's links.
const PREVIEW_SAMPLE = "【淘宝】https://m.tb.cn/h.UXpq2Xr 看看这个，抖音 https://v.douyin.com/iRNBho6/ 京东 https://item.jd.com/100012043978.html";
const REFUSED_BEFORE_PROBE = 3; // failed handshakes in a row before checking the session
const RELOAD_DEBOUNCE_MS = 120; // era changes in quick succession (walkthrough) reload once
const DEFAULT_MAU = 1.25e9; // the article's monthly active users
const DEFAULT_SHARE = 1; // the article's share rate, in percent
const RESUME_RETRY_MS = 1000; // a resume refused by the rate limit (100/s after a burst) is asked again after this

const S = {
  me: null,
  users: new Map(), // id → user
  rooms: new Map(), // id → room
  eras: [],
  defaultEra: "",
  platforms: new Map(), // id → platform
  msgs: new Map(), // room id → { bySeq: Map, loaded, gen, reloadTimer }
  pending: new Map(), // client_msg_id → pending message
  drafts: new Map(), // room id → unsent composer text, kept across room switches and redraws
  current: null, // open room id
  lastRoom: null, // the room opened last, still offered when a phone shows the list
  wanted: null, // room id from a deep link, opened once known
  socket: null,
  everConnected: false,
  helloSeen: false, // the socket is up and has said hello
  lastRead: {},
  el: {}, // long-lived elements of the chat screen
};

const root = document.getElementById("app");
const live = document.getElementById("live");
const banner = document.getElementById("banner");

// ---------- helpers ----------

function roomState(id) {
  let st = S.msgs.get(id);
  if (!st) {
    st = { bySeq: new Map(), floor: 0, loaded: false, gen: 0, reloadTimer: 0 };
    S.msgs.set(id, st);
  }
  return st;
}

function sortedMessages(id) {
  return [...roomState(id).bySeq.values()].sort((a, b) => a.seq - b.seq);
}

function lastSeq(id) {
  let max = 0;
  for (const s of roomState(id).bySeq.keys()) if (s > max) max = s;
  return max;
}

// resumePoint is the highest seq up to which the room's history has no
// hole: resuming from there fills any gap, and dedupe by seq drops overlap.
// It starts below the oldest message the server still keeps (a store with
// retention drops the oldest), or every resume would re-send all it keeps.
function resumePoint(id) {
  const st = roomState(id);
  const have = st.bySeq;
  let k = st.floor || 0;
  while (have.has(k + 1)) k++;
  return k;
}

function platformName(id) {
  if (!id) return "";
  const p = S.platforms.get(id);
  if (!p) return id;
  return getLang() === "zh" ? p.name_zh || p.name : p.name || p.name_zh;
}

function eraByID(id) {
  return S.eras.find((e) => e.id === id);
}

function eraName(id) {
  const e = eraByID(id);
  if (!e) return id || "";
  return getLang() === "zh" ? e.name_zh || e.name : e.name || e.name_zh;
}

function roomTitle(room) {
  if (!room) return "";
  if (room.kind === "group") return room.name || t("group");
  const other = (room.members || []).find((m) => m !== S.me.id);
  const u = other && S.users.get(other);
  if (u) return u.name;
  // Someone who joined after our user list was loaded: their messages name them.
  for (const m of roomState(room.id).bySeq.values()) {
    if (m.sender && m.sender.id === other) return m.sender.name;
  }
  if (other) refreshUsers();
  return room.name || t("direct");
}

function newClientID() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context; a LAN demo over http may lack it.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// keepFocus runs render, which redraws container's content. If that took
// the focus away, it goes to the redrawn counterpart that find picks for the
// old element, so live traffic or someone else's change does not throw a
// keyboard or screen-reader user back to the top of the page.
function keepFocus(container, find, render) {
  const had = container.contains(document.activeElement) && document.activeElement !== container ? document.activeElement : null;
  render();
  if (!had || had.isConnected) return;
  const el = find(had);
  if (el) el.focus({ preventScroll: true });
}

function announce(text) {
  // Re-setting the text makes screen readers read it even when unchanged.
  live.textContent = "";
  setTimeout(() => { live.textContent = text; }, 30);
}

let toastTimer = 0;
function toast(text) {
  let el = document.getElementById("toast");
  if (!el) {
    el = h("div", { id: "toast", class: "toast", role: "status" });
    document.body.appendChild(el);
  }
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

// formError is what a dialog's form says when its request failed.
function formError(ex) {
  return ex.status === 0 ? t("errorNetwork") : serverError(ex.code, ex.message);
}

// formActions is a dialog form's Cancel and submit buttons.
function formActions(submitText) {
  return h("div", { class: "modal-actions" },
    h("button", { type: "button", class: "btn", text: t("cancel"), onclick: () => closeModal() }),
    h("button", { type: "submit", class: "btn primary", text: submitText }));
}

function fail(err) {
  if (err instanceof APIError && err.status === 401) {
    showJoin();
    return;
  }
  const msg = err instanceof APIError && err.status === 0 ? t("errorNetwork") : t("errorGeneric", { message: err instanceof APIError ? serverError(err.code, err.message) : err.message || String(err) });
  toast(msg);
}

function loadLastRead() {
  try {
    S.lastRead = JSON.parse(localStorage.getItem(`linkwall.read.${S.me.id}`) || "{}") || {};
  } catch {
    S.lastRead = {};
  }
}

function markRead(id) {
  const seq = lastSeq(id);
  if ((S.lastRead[id] || 0) >= seq) return;
  S.lastRead[id] = seq;
  try {
    localStorage.setItem(`linkwall.read.${S.me.id}`, JSON.stringify(S.lastRead));
  } catch {
    // Unread counts then only last for this page view.
  }
}

function unreadCount(id) {
  const read = S.lastRead[id] || 0;
  let n = 0;
  for (const m of roomState(id).bySeq.values()) {
    if (m.seq > read && m.sender && m.sender.id !== S.me.id) n++;
  }
  return n;
}

function langToggle() {
  return h("button", {
    type: "button",
    class: "btn lang-btn",
    "aria-label": t("langToggleLabel"),
    onclick: toggleLang,
  }, icon("globe"), h("span", { text: t("langToggle") }));
}

// toggleLang switches this page's language only; LinkBot's language is the
// room's, changed for everyone by the button in the conversation header.
function toggleLang() {
  setLang(getLang() === "zh" ? "en" : "zh");
  closeModal();
  const why = S.el.messages ? openWhyPanels(S.el.messages) : [];
  if (S.me) renderChat();
  else showJoin();
  if (S.el.messages) reopenWhyPanels(S.el.messages, why);
  if (!banner.hidden) banner.textContent = t(banner.dataset.key || "reconnecting");
  root.querySelector(".lang-btn")?.focus(); // the page was redrawn under the button
}

// ---------- join ----------

// endSession forgets everything of the signed-in user (logout, or a session
// the server no longer knows), so a new name starts clean.
function endSession() {
  if (S.socket) S.socket.dispose();
  S.socket = null;
  S.me = null;
  S.users.clear();
  S.rooms.clear();
  S.msgs.clear();
  S.pending.clear();
  S.current = null;
  S.lastRoom = null;
  S.wanted = null;
  S.everConnected = false;
  S.helloSeen = false;
  S.el = {};
  delete document.body.dataset.ws;
  banner.hidden = true;
}

function showJoin() {
  endSession();
  document.title = t("appName");
  const err = h("p", { class: "form-error", role: "alert" });
  const input = h("input", {
    id: "join-name",
    name: "name",
    type: "text",
    autocomplete: "nickname",
    ...charLimit(MAX_NAME),
    placeholder: t("joinPlaceholder"),
    required: true,
  });
  const form = h("form", { class: "join-form", novalidate: true },
    h("label", { for: "join-name", text: t("joinName") }),
    input,
    err,
    h("button", { type: "submit", class: "btn primary wide", text: t("joinButton") }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = input.value.trim();
    if (!name) {
      err.textContent = t("joinEmpty");
      input.focus();
      return;
    }
    try {
      const { user } = await api.join(name);
      await startChat(user);
    } catch (ex) {
      err.textContent = formError(ex);
    }
  });
  clear(root).appendChild(h("div", { class: "join" },
    h("div", { class: "join-card" },
      h("div", { class: "join-top" }, langToggle()),
      h("div", { class: "join-logo" }, icon("chat")),
      h("h1", { text: t("appName") }),
      h("p", { class: "tagline", text: t("tagline") }),
      h("h2", { class: "join-title", text: t("joinTitle") }),
      form)));
  input.focus();
}

// ---------- chat screen ----------

async function startChat(user) {
  S.me = user;
  loadLastRead();
  const [eras, platforms] = await Promise.all([
    api.eras().catch(() => ({ eras: [], default: "" })),
    api.platforms().catch(() => ({ platforms: [] })),
  ]);
  S.eras = eras.eras || [];
  S.defaultEra = eras.default || "";
  S.platforms = new Map((platforms.platforms || []).map((p) => [p.id, p]));
  await Promise.all([refreshUsers(true), api.rooms().then(({ rooms }) => (rooms || []).forEach((r) => S.rooms.set(r.id, r)))]);
  renderChat();
  S.socket = new Socket({
    onFrame,
    onDown: (code) => {
      S.helloSeen = false;
      document.body.dataset.ws = "down";
      banner.hidden = false;
      banner.dataset.key = code === TOO_MANY_CONNECTIONS ? "tooManyConnections" : "reconnecting";
      banner.textContent = t(banner.dataset.key);
    },
    onAuthLost: () => showJoin(),
    onRefused: (n) => {
      // After a few refused handshakes, ask whether the session still exists
      // (it ends when the user logs out in another tab).
      if (n < REFUSED_BEFORE_PROBE) return;
      api.me().catch((err) => {
        if (err instanceof APIError && err.status === 401) showJoin();
      });
    },
  });
  S.socket.start();
  for (const id of S.rooms.keys()) loadRoom(id);
  route();
}

let usersPromise = null;
let usersFetchedAt = 0;
const USERS_REFRESH_MS = 3000; // an unknown name asks the server at most this often

// refreshUsers reloads the user list; force skips the rate limit (a new
// room names a member we have not seen).
function refreshUsers(force) {
  if (usersPromise) return usersPromise;
  if (!force && Date.now() - usersFetchedAt < USERS_REFRESH_MS) return Promise.resolve();
  usersPromise = api.users().then(({ users }) => {
    for (const u of users || []) S.users.set(u.id, u);
    if (!S.me) return;
    renderRoomList();
    if (S.current) renderHeader();
  }).catch(() => {}).finally(() => {
    usersFetchedAt = Date.now();
    usersPromise = null;
  });
  return usersPromise;
}

function renderChat() {
  document.title = t("appName");
  const list = h("ul", { class: "room-list", "aria-label": t("chats") });
  const side = h("aside", { class: "sidebar" },
    h("header", { class: "side-head" },
      avatar(S.me.id, S.me.name, false),
      h("div", { class: "side-me" },
        h("div", { class: "side-title", text: t("chats") }),
        h("div", { class: "side-sub", text: t("signedInAs", { name: S.me.name }) })),
      langToggle(),
      h("button", { type: "button", class: "icon-btn switch-btn", "aria-label": t("switchPerson"), title: t("switchPerson"), onclick: switchPerson }, icon("person")),
      h("button", { type: "button", class: "icon-btn logout-btn", "aria-label": t("logout"), title: t("logout"), onclick: logout }, icon("logout"))),
    h("div", { class: "side-actions" },
      h("button", { type: "button", class: "btn new-chat", onclick: newChatDialog }, icon("person"), h("span", { text: t("newChat") })),
      h("button", { type: "button", class: "btn new-group", onclick: newGroupDialog }, icon("group"), h("span", { text: t("newGroup") })),
      h("button", { type: "button", class: "btn preview-btn", "aria-label": t("previewLabel"), title: t("previewLabel"), onclick: previewDialog },
        icon("link"), h("span", { text: t("preview") })),
      h("button", { type: "button", class: "btn accent walkthrough-btn", "aria-label": t("walkthroughLabel"), title: t("walkthroughLabel"), onclick: walkthroughDialog },
        icon("play"), h("span", { text: t("walkthrough") }))),
    list);
  const conv = h("section", { class: "conv", "aria-label": t("chats") });
  // Keyboard users skip the room list and every link of the history.
  const skip = h("a", { class: "skip-link", href: "#", text: t("skipToComposer"), onclick: (e) => {
    e.preventDefault();
    (S.el.input || list.querySelector(".room-item") || conv).focus();
  } });
  const shell = h("div", { class: "shell" }, skip, side, conv);
  S.el = { shell, list, conv, skip };
  clear(root).appendChild(shell);
  renderRoomList();
  renderConversation();
}

function renderRoomList() {
  const list = S.el.list;
  if (!list || !S.me) return;
  keepFocus(list, (old) => list.querySelector(`.room-item[data-room="${CSS.escape(old.dataset.room || "")}"]`), () => drawRoomList(list));
}

function drawRoomList(list) {
  clear(list);
  const rooms = [...S.rooms.values()].sort((a, b) => lastActivity(b) - lastActivity(a));
  if (!rooms.length) {
    list.appendChild(h("li", { class: "room-empty", text: t("noChats") }));
    return;
  }
  for (const room of rooms) {
    const msgs = sortedMessages(room.id);
    // LinkBot's notices follow the message they are about: the list shows that message.
    const last = msgs.findLast((m) => !m.system) || msgs[msgs.length - 1];
    const unread = room.id === S.current ? 0 : unreadCount(room.id);
    let preview = "";
    if (last) {
      const who = last.sender && last.sender.id === S.me.id ? t("you") : last.sender ? last.sender.name : "";
      preview = last.system || (room.kind === "direct" && !last.sender?.bot) ? last.text : `${who}: ${last.text}`;
    }
    const title = roomTitle(room);
    list.appendChild(h("li", null,
      h("button", {
        type: "button",
        class: "room-item",
        dataset: { room: room.id, kind: room.kind },
        "aria-current": room.id === S.current ? "true" : null,
        onclick: () => { location.hash = `#/rooms/${room.id}`; },
      },
      h("div", { class: `room-icon kind-${room.kind}` },
        room.kind === "group" ? icon("group") : avatar(room.members.find((m) => m !== S.me.id) || room.id, title, false)),
      h("div", { class: "room-main" },
        h("div", { class: "room-line" },
          h("span", { class: "room-name", text: title }),
          last ? h("time", { class: "room-time", datetime: last.sent_at, text: shortTime(last.sent_at) }) : null),
        h("div", { class: "room-line" },
          h("span", { class: "room-kind", "aria-label": t(room.kind) }, icon(room.kind === "group" ? "group" : "person", "tiny")),
          h("span", { class: "room-last", text: preview }),
          unread ? h("span", { class: "unread", "aria-label": t("unread", { n: unread }), text: unread > 99 ? "99+" : String(unread) }) : null)))));
  }
}

function lastActivity(room) {
  const msgs = sortedMessages(room.id);
  const last = msgs[msgs.length - 1];
  return new Date(last ? last.sent_at : room.created_at || 0).getTime() || 0;
}

function shortTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString(locale(), { month: "short", day: "numeric" });
}

// ---------- conversation ----------

function renderConversation() {
  const conv = S.el.conv;
  if (!conv) return;
  clear(conv);
  S.el.shell.classList.toggle("in-room", !!S.current);
  const room = S.current && S.rooms.get(S.current);
  if (!room) {
    conv.appendChild(h("div", { class: "conv-empty" }, icon("chat", "big"), h("p", { text: t("selectChat") })));
    S.el.messages = null;
    S.el.input = null;
    S.el.skip.textContent = t("skipToChats");
    return;
  }
  S.lastRoom = room.id; // the walkthrough dialog offers it on a phone, where the list hides the chat
  S.el.skip.textContent = t("skipToComposer");
  const head = h("header", { class: "conv-head" });
  const eraBar = h("button", { type: "button", class: "era-bar", onclick: eraDialog });
  // aria-live="off": new messages are announced once, by the #live region;
  // the log itself would also read whole re-renders after an era change.
  const messages = h("div", { class: "messages", role: "log", "aria-live": "off", "aria-label": roomTitle(room), tabindex: "0", dataset: { room: room.id } });
  const input = h("textarea", {
    class: "composer-input",
    rows: "1",
    ...textLimit(MAX_TEXT),
    placeholder: t("typeMessage"),
    "aria-label": t("typeMessage"),
  });
  // The input grows with its text up to the CSS max-height, like a phone's.
  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight + 2}px`;
  };
  input.addEventListener("input", () => {
    grow();
    if (input.value.trim()) S.drafts.set(room.id, input.value);
    else S.drafts.delete(room.id);
  });
  input.addEventListener("keydown", (e) => {
    // isComposing: Enter that confirms a Chinese IME candidate must not send.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendFromComposer();
    }
  });
  const composer = h("form", { class: "composer" }, input,
    h("button", { type: "submit", class: "btn primary send-btn", text: t("send") }));
  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    sendFromComposer();
  });
  conv.append(head, eraBar, messages, composer);
  S.el.head = head;
  S.el.eraBar = eraBar;
  S.el.messages = messages;
  S.el.input = input;
  renderHeader();
  renderMessages();
  const draft = S.drafts.get(room.id);
  if (draft) {
    input.value = draft;
    grow();
    showTextLength(input);
  }
}

// roomLangButton shows the language LinkBot answers in, in this room, and
// switches it for every member.
function roomLangButton(room) {
  const other = room.lang === "zh" ? "en" : "zh";
  const name = (lang) => (lang === "zh" ? t("langNameZh") : t("langNameEn"));
  const label = t("roomLangSwitch", { lang: name(other) });
  return h("button", {
    type: "button", class: "room-lang-btn", title: label, "aria-label": `${t("roomLang", { lang: name(room.lang) })}. ${label}`,
    onclick: () => api.setLang(room.id, other).then(({ room: updated }) => upsertRoom(updated)).catch(fail),
  }, t("roomLang", { lang: name(room.lang) }));
}

let flashEraBar = false; // the next header render highlights a changed era

function renderHeader() {
  const room = S.rooms.get(S.current);
  const head = S.el.head;
  if (!room || !head) return;
  const eraLabel = t("eraButton", { name: eraName(room.era) });
  const sub = room.kind === "group"
    ? `${t("group")} · ${t((room.members || []).length === 1 ? "memberOne" : "members", { n: (room.members || []).length })}`
    : t("direct");
  keepFocus(head, sameInHeader, () => clear(head).append(
    h("button", { type: "button", class: "icon-btn back-btn", "aria-label": t("back"), onclick: () => { location.hash = "#/"; } }, icon("back")),
    h("div", { class: "conv-title" },
      h("h2", { class: "conv-name", tabindex: "-1", text: roomTitle(room) }),
      h("div", { class: "conv-sub" }, `${sub} · `, roomLangButton(room))),
    // The labels are hidden on narrow screens; aria-label and title keep
    // the buttons named for screen readers and on hover.
    h("button", {
      type: "button", class: "btn era-btn", onclick: eraDialog, dataset: { era: room.era || "" }, "aria-label": eraLabel, title: eraLabel,
    }, icon("clock"), h("span", { text: eraLabel })),
    h("button", { type: "button", class: "btn traffic-btn", onclick: trafficDialog, "aria-label": t("traffic"), title: t("traffic") },
      icon("chart"), h("span", { text: t("traffic") }))));
  const era = eraByID(room.era);
  const bar = S.el.eraBar;
  clear(bar);
  bar.dataset.era = room.era || "";
  bar.append(icon("clock", "tiny"), h("span", { class: "era-label", text: t("shownUnder", { name: eraName(room.era) }) }));
  if (flashEraBar) {
    // Everyone sees the switch, not only the person who made it.
    flashEraBar = false;
    bar.classList.remove("flash");
    void bar.offsetWidth; // restart the animation
    bar.classList.add("flash");
  }
  if (era && !era.hypothetical) bar.append(h("span", { class: "era-date", text: era.from ? t("eraFrom", { date: era.from }) : eraBefore(era) }));
  if (era && era.hypothetical) bar.append(h("span", { class: "tag tag-hypo", text: t("hypothetical") }));
  document.title = `${roomTitle(room)} · ${t("appName")}`;
}

// sameInHeader finds the redrawn counterpart of old, an element of the
// conversation header: each one that takes focus has classes of its own.
function sameInHeader(old) {
  const head = S.el.head;
  if (!head || !old.classList.length) return null;
  return head.querySelector([...old.classList].map((c) => `.${CSS.escape(c)}`).join(""));
}

// eraBefore labels an era without a start date (the first): until the
// next dated era of the policy, whatever its date.
function eraBefore(era) {
  const next = S.eras.slice(S.eras.indexOf(era) + 1).find((e) => e.from && !e.hypothetical);
  return next ? t("eraAlways", { date: next.from }) : t("sinceAlways");
}

function ctxFor(room) {
  return {
    meID: S.me.id,
    meName: S.me.name,
    group: room.kind === "group",
    platformName,
    // eraName labels LinkBot's samples with the era each shows.
    eraName,
    // neverHeld: the policy gives the rule for hypothetical eras only.
    neverHeld: (rule) => {
      const eras = S.eras.filter((e) => (e.rules || []).includes(rule));
      return eras.length > 0 && eras.every((e) => e.hypothetical);
    },
    onLink: linkInterstitial,
    onRetry: retrySend,
  };
}

function renderMessages() {
  const box = S.el.messages;
  const room = S.rooms.get(S.current);
  if (!box || !room) return;
  keepFocus(box, (old) => sameInMessage(box, old), () => drawMessages(box, room));
}

// sameInMessage finds, in the redrawn box, the link or button that old was
// in its message; the log itself if the message or the control is gone.
function sameInMessage(box, old) {
  const FOCUSABLE = 'a[href], button, [tabindex="0"]';
  const msg = old.closest(".msg");
  const key = msg ? msgKey(msg) : "";
  const now = key && box.querySelector(`.msg${key}`);
  if (!now) return box;
  return now.querySelectorAll(FOCUSABLE)[[...msg.querySelectorAll(FOCUSABLE)].indexOf(old)] || box;
}

// msgKey is the selector of a message element: by seq, or by client id
// while it is pending.
function msgKey(msg) {
  return msg.dataset.seq ? `[data-seq="${CSS.escape(msg.dataset.seq)}"]` : `[data-client-msg-id="${CSS.escape(msg.dataset.clientMsgId || "")}"]`;
}

// openWhyPanels and reopenWhyPanels keep open "Why?" panels open across a
// redraw (a language switch; an era change, after which the panel explains
// the new outcome).
function openWhyPanels(box) {
  return [...box.querySelectorAll('.why[aria-expanded="true"]')].map((b) => {
    const msg = b.closest(".msg");
    return msg ? `.msg${msgKey(msg)} .why[data-why-for="${CSS.escape(b.dataset.whyFor || "")}"]` : "";
  }).filter(Boolean);
}

function reopenWhyPanels(box, selectors) {
  for (const sel of selectors) {
    const b = box.querySelector(sel);
    if (b && b.getAttribute("aria-expanded") !== "true") b.click();
  }
}

function drawMessages(box, room) {
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const keep = box.scrollTop;
  const why = openWhyPanels(box);
  clear(box);
  const ctx = ctxFor(room);
  const msgs = sortedMessages(room.id);
  let prev = 0;
  let blockedSince = false; // a message since the last notice shows a blocked link
  for (const m of msgs) {
    if (m.system) {
      // LinkBot's grey notice follows blocked links; once the room's era
      // shows them otherwise, it no longer applies.
      const show = blockedSince;
      blockedSince = false;
      if (!show) continue;
    } else if ((m.links || []).some((l) => l.outcome === "blocked")) {
      blockedSince = true;
    }
    const at = new Date(m.sent_at).getTime();
    if (!prev || at - prev > SEPARATOR_GAP_MS) box.appendChild(timeSeparator(m.sent_at));
    prev = at;
    box.appendChild(messageElement(m, ctx));
  }
  const pend = [...S.pending.values()].filter((p) => p.room === room.id);
  for (const p of pend) box.appendChild(messageElement(p, ctx));
  if (!msgs.length && !pend.length) {
    box.appendChild(h("div", { class: "conv-hint", text: roomState(room.id).loaded ? t("noMessages") : "…" }));
  }
  reopenWhyPanels(box, why);
  box.scrollTop = atBottom || !keep ? box.scrollHeight : keep;
  // data-loaded tells tests (and styles) that the history is in.
  box.dataset.loaded = String(roomState(room.id).loaded);
  markRead(room.id);
}

// appendMessage adds one new message at the end without rebuilding the view,
// so open "Why?" panels and the scroll position survive live traffic.
function appendMessage(m) {
  const box = S.el.messages;
  const room = S.rooms.get(S.current);
  if (!box || !room || m.room !== room.id) return;
  const rendered = box.querySelectorAll(".msg[data-seq]");
  const last = rendered[rendered.length - 1];
  if ((last && Number(last.dataset.seq) > m.seq) || box.querySelector(".conv-hint")) {
    renderMessages();
    return;
  }
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  const firstPending = box.querySelector(".msg.pending");
  const prevMsg = roomState(room.id).bySeq.get(m.seq - 1);
  const nodes = [];
  if (!prevMsg || new Date(m.sent_at) - new Date(prevMsg.sent_at) > SEPARATOR_GAP_MS) nodes.push(timeSeparator(m.sent_at));
  nodes.push(messageElement(m, ctxFor(room)));
  for (const n of nodes) box.insertBefore(n, firstPending);
  if (atBottom || (m.sender && m.sender.id === S.me.id)) box.scrollTop = box.scrollHeight;
  markRead(room.id);
}

function openRoom(id) {
  if (S.current === id && S.el.messages) return;
  S.current = id;
  closeModal();
  renderConversation();
  renderRoomList();
  if (!roomState(id).loaded) loadRoom(id);
  // On a phone, focusing the input would pop the keyboard over the history:
  // focus the title instead so keyboard and screen-reader users land in the room.
  if (S.el.input && window.matchMedia("(min-width: 701px)").matches) S.el.input.focus();
  else S.el.conv.querySelector(".conv-name")?.focus({ preventScroll: true });
}

function closeRoom() {
  S.current = null;
  renderConversation();
  renderRoomList();
}

// route follows the hash: "#/rooms/<id>" opens that conversation.
async function route() {
  if (!S.me) return;
  const m = /^#\/rooms\/([^/?#]+)/.exec(location.hash);
  if (!m) {
    S.wanted = null;
    if (S.current) closeRoom();
    return;
  }
  const id = decodeURIComponent(m[1]);
  if (S.rooms.has(id)) {
    openRoom(id);
    return;
  }
  S.wanted = id;
  try {
    const { room } = await api.room(id);
    upsertRoom(room);
    openRoom(id);
  } catch (err) {
    if (err instanceof APIError && (err.code === "not_found" || err.code === "forbidden" || err.code === "invalid")) {
      // A link to a chat that is gone or someone else's: the address must
      // not name one room while another is on screen. Unless the person
      // has gone elsewhere while it was looked up.
      const now = /^#\/rooms\/([^/?#]+)/.exec(location.hash);
      if (!now || decodeURIComponent(now[1]) !== id) return;
      if (S.wanted === id) S.wanted = null;
      history.replaceState(null, "", location.pathname + location.search);
      if (S.current) closeRoom();
      toast(t("roomUnavailable"));
      return;
    }
    fail(err);
  }
}

window.addEventListener("hashchange", route);

// ---------- data flow ----------

function upsertRoom(room) {
  if (!room || !room.id) return;
  const old = S.rooms.get(room.id);
  S.rooms.set(room.id, room);
  if (!old) {
    loadRoom(room.id);
    if ((room.members || []).some((id) => id !== S.me.id && !S.users.has(id))) refreshUsers(true);
  } else if (old.era !== room.era) {
    scheduleReload(room.id);
    if (room.id === S.current) {
      announce(t("eraChanged", { name: eraName(room.era) }));
      flashEraBar = true;
    }
  }
  renderRoomList();
  if (room.id === S.current) renderHeader();
  if (S.wanted === room.id) {
    S.wanted = null;
    openRoom(room.id);
  }
}

// loadRoom fetches a room's whole history (decided under the room's current era).
async function loadRoom(id) {
  const st = roomState(id);
  const gen = ++st.gen;
  try {
    const msgs = await allMessages(id, 0);
    if (gen !== st.gen) return; // a newer load (era changed again) wins
    const max = msgs.length ? msgs[msgs.length - 1].seq : 0;
    const next = new Map();
    for (const m of msgs) next.set(m.seq, m);
    // Live messages that arrived while loading stay.
    for (const [seq, m] of st.bySeq) if (seq > max) next.set(seq, m);
    st.bySeq = next;
    st.floor = msgs.length ? msgs[0].seq - 1 : 0;
    st.loaded = true;
    if (!(id in S.lastRead) && !S.everConnected) {
      // A first visit starts with everything read, not with a wall of badges.
      S.lastRead[id] = lastSeq(id);
    }
    renderRoomList();
    if (id === S.current) renderMessages();
    // Anything sent between the history request and now comes by resume; dedupe by seq.
    if (S.helloSeen) S.socket.send({ type: "resume", room: id, after: resumePoint(id) });
  } catch (err) {
    if (gen === st.gen) fail(err);
  }
}

function scheduleReload(id) {
  const st = roomState(id);
  clearTimeout(st.reloadTimer);
  st.reloadTimer = setTimeout(() => loadRoom(id), RELOAD_DEBOUNCE_MS);
}

function onFrame(f) {
  switch (f.type) {
    case "hello":
      onHello(f);
      break;
    case "message":
      onMessage(f.message, f.client_msg_id);
      break;
    case "room":
      upsertRoom(f.room);
      break;
    case "error":
      onError(f);
      break;
    case "pong":
      break;
    default:
      break; // frames from a newer server are ignored
  }
}

function onHello(f) {
  S.everConnected = true;
  S.helloSeen = true;
  document.body.dataset.ws = "up";
  banner.hidden = true;
  for (const room of f.rooms || []) {
    const known = S.rooms.has(room.id);
    upsertRoom(room);
    // Ask for exactly what was missed since the history we hold; dedupe by
    // seq covers overlaps. Rooms still loading resume when their load ends.
    if (known && roomState(room.id).loaded) S.socket.send({ type: "resume", room: room.id, after: resumePoint(room.id) });
  }
  // Messages typed while offline go out now; the same client_msg_id makes a resend harmless.
  for (const p of S.pending.values()) {
    if (!p.failed) S.socket.send({ type: "send", room: p.room, text: p.text, client_msg_id: p.client_msg_id });
  }
}

function onMessage(m, clientID) {
  if (!m || !m.room || typeof m.seq !== "number") return;
  const st = roomState(m.room);
  let ackedPending = false;
  if (clientID && S.pending.has(clientID)) {
    S.pending.delete(clientID);
    ackedPending = true;
    if (S.el.messages) {
      const el = S.el.messages.querySelector(`.msg.pending[data-client-msg-id="${CSS.escape(clientID)}"]`);
      if (el) el.remove();
    }
  }
  if (!S.rooms.has(m.room)) {
    api.room(m.room).then(({ room }) => upsertRoom(room)).catch(() => {});
  }
  if (st.bySeq.has(m.seq)) {
    // Already shown (resume overlap or a resent message): no duplicate.
    if (ackedPending && m.room === S.current) renderMessages();
    return;
  }
  st.bySeq.set(m.seq, m);
  const room = S.rooms.get(m.room);
  if (room && m.era && room.era && m.era !== room.era) scheduleReload(m.room); // stored decision from an older era
  if (m.room === S.current) appendMessage(m);
  const mine = m.sender && m.sender.id === S.me.id;
  if (!mine && (m.room !== S.current || document.hidden)) {
    announce(t("newMessage", { name: m.sender ? m.sender.name : "", text: m.text }));
  } else if (!mine && m.room === S.current) {
    announce(`${m.sender ? m.sender.name : ""}: ${m.text}`);
  }
  renderRoomList();
}

function onError(f) {
  // A resume the server's limit refused is asked again shortly, quietly:
  // the room's history is still missing, and nothing else would fetch it.
  if (f.ref === "resume" && f.code === "rate_limited" && S.rooms.has(f.room)) {
    setTimeout(() => {
      if (S.helloSeen && roomState(f.room).loaded) S.socket.send({ type: "resume", room: f.room, after: resumePoint(f.room) });
    }, RESUME_RETRY_MS);
    return;
  }
  const p = f.ref && S.pending.get(f.ref);
  if (p) {
    p.failed = true;
    if (p.room === S.current) renderMessages();
  }
  toast(t("errorGeneric", { message: serverError(f.code, f.message) }));
}

function sendFromComposer() {
  const input = S.el.input;
  if (!input || !S.current) return;
  const text = input.value.trim();
  if (!text) return;
  if (showTextLength(input)) {
    input.focus();
    return;
  }
  input.value = "";
  input.style.height = "";
  showTextLength(input);
  S.drafts.delete(S.current);
  const p = {
    pending: true,
    client_msg_id: newClientID(),
    room: S.current,
    text,
    links: [],
    sender: { id: S.me.id, name: S.me.name, bot: false },
    sent_at: new Date().toISOString(),
  };
  S.pending.set(p.client_msg_id, p);
  const box = S.el.messages;
  if (box) {
    const hint = box.querySelector(".conv-hint");
    if (hint) hint.remove();
    box.appendChild(messageElement(p, ctxFor(S.rooms.get(S.current))));
    box.scrollTop = box.scrollHeight;
  }
  // Not connected: it stays pending and goes out on the next hello.
  S.socket.send({ type: "send", room: p.room, text: p.text, client_msg_id: p.client_msg_id });
}

function retrySend(p) {
  p.failed = false;
  if (p.room === S.current) renderMessages();
  S.socket.send({ type: "send", room: p.room, text: p.text, client_msg_id: p.client_msg_id });
}

// switchPerson shows the join screen without ending the session, which
// another tab of this browser may be using: the next join is this tab's own.
function switchPerson() {
  api.forgetTab();
  history.replaceState(null, "", "#/");
  showJoin();
}

async function logout() {
  try {
    await api.logout();
  } catch {
    // The cookie may already be gone; the join screen is right either way.
  }
  history.replaceState(null, "", "#/");
  showJoin();
}

// ---------- dialogs ----------

function linkInterstitial(link) {
  const name = platformName(link.platform) || t("otherSite");
  if (link.outcome === "blocked") {
    const field = h("input", { type: "text", class: "addr", readOnly: true, value: link.url, "aria-label": t("address"), id: "blocked-addr" });
    field.addEventListener("focus", () => field.select());
    const status = h("span", { class: "copy-status", role: "status" });
    const copyBtn = h("button", { type: "button", class: "btn primary copy-btn", text: t("copy") });
    copyBtn.addEventListener("click", async () => {
      field.select();
      let ok = false;
      try {
        await navigator.clipboard.writeText(link.url);
        ok = true;
      } catch {
        try {
          ok = document.execCommand("copy");
        } catch {
          ok = false;
        }
      }
      status.textContent = ok ? t("copied") : t("copyFailed");
    });
    openModal({
      title: t("blockedTitle"),
      className: "interstitial interstitial-blocked",
      returnFocus: (old) => S.el.messages && sameInMessage(S.el.messages, old),
      body: [
        h("div", { class: "inter-icon blocked" }, icon("ban")),
        h("p", { class: "inter-text", text: t("blockedBody") }),
        h("label", { for: "blocked-addr", class: "addr-label", text: t("address") }),
        h("div", { class: "addr-row" }, field, copyBtn),
        status,
      ],
    });
    return;
  }
  const open = isWebURL(link.url)
    ? h("a", { class: "btn primary", href: link.url, target: "_blank", rel: "noopener noreferrer", text: t("openAnyway"), onclick: () => closeModal() })
    : null;
  const login = link.login_required || (link.platform && link.outcome === "hyperlink");
  openModal({
    title: login ? t("loginTitle", { platform: name }) : t("externalTitle"),
    className: "interstitial interstitial-login",
    returnFocus: (old) => S.el.messages && sameInMessage(S.el.messages, old),
    body: [
      h("div", { class: "inter-icon login" }, icon(login ? "lock" : "link")),
      h("p", { class: "inter-text", text: login ? t("loginBody", { platform: name }) : t("externalBody") }),
      h("p", { class: "inter-url", text: link.url }),
      h("div", { class: "modal-actions" },
        h("button", { type: "button", class: "btn", text: t("cancel"), onclick: () => closeModal() }),
        open),
    ],
  });
}

function eraDialog() {
  const room = S.rooms.get(S.current);
  if (!room) return;
  const list = h("ol", { class: "timeline" });
  for (const era of S.eras) {
    const cur = era.id === room.era;
    const name = getLang() === "zh" ? era.name_zh || era.name : era.name;
    const summary = getLang() === "zh" ? era.summary_zh || era.summary : era.summary;
    list.appendChild(h("li", { class: ["tl-item", cur ? "is-current" : "", era.hypothetical ? "is-hypo" : ""] },
      h("button", {
        type: "button",
        class: "tl-btn",
        dataset: { era: era.id },
        "aria-pressed": String(cur),
        onclick: async () => {
          if (cur) {
            closeModal();
            return;
          }
          try {
            const { room: updated } = await api.setEra(room.id, era.id);
            closeModal();
            upsertRoom(updated);
          } catch (err) {
            fail(err);
          }
        },
      },
      h("span", { class: "tl-dot", "aria-hidden": "true" }),
      h("span", { class: "tl-date", text: era.hypothetical ? t("hypothetical") : era.from ? era.from : eraBefore(era) }),
      h("span", { class: "tl-name" }, h("span", { text: name }),
        cur ? h("span", { class: "tag tag-current", text: t("current") }) : null,
        era.hypothetical ? h("span", { class: "tag tag-hypo", text: t("hypothetical") }) : null),
      summary ? h("span", { class: "tl-summary", text: summary }) : null)));
  }
  openModal({ title: t("eraTimeline"), className: "era-modal", body: [h("p", { class: "muted", text: t("eraIntro") }), list], returnFocus: sameInHeader });
}

// previewDialog shows how a text's links render in every era and both chat
// kinds, without posting anything (POST /api/v1/preview/all); a cell opens the
// message as that era and chat kind would show it.
function previewDialog() {
  const kinds = ["direct", "group"];
  const input = h("textarea", { id: "preview-text", rows: "3", ...textLimit(MAX_TEXT), autofocus: true });
  input.value = PREVIEW_SAMPLE;
  const grid = h("div", { class: "preview-grid", "aria-live": "polite" });
  const shown = h("div", { class: "preview-msg" });
  let pick = { era: S.defaultEra || (S.eras[0] || {}).id, kind: "group" };
  let results = new Map(); // "era/kind" → preview answer
  let gen = 0;

  const showPick = () => {
    clear(shown);
    const res = results.get(`${pick.era}/${pick.kind}`);
    if (!res) return;
    shown.append(
      h("p", { class: "muted preview-caption", text: `${eraName(pick.era)} · ${t(pick.kind)}` }),
      messageElement({ seq: 0, text: input.value, links: res.links || [], links_truncated: res.truncated, sender: { id: S.me.id, name: S.me.name }, sent_at: new Date().toISOString() },
        { ...ctxFor({ kind: pick.kind }), onLink: () => {}, onRetry: () => {} }));
    for (const b of grid.querySelectorAll(".preview-cell")) b.setAttribute("aria-pressed", String(b.dataset.era === pick.era && b.dataset.kind === pick.kind));
  };

  const drawGrid = () => {
    clear(grid);
    const head = h("tr", null, h("th", { scope: "col", text: t("era") }), kinds.map((k) => h("th", { scope: "col", text: t(k) })));
    const body = h("tbody");
    for (const era of S.eras) {
      body.appendChild(h("tr", null, h("th", { scope: "row", text: eraName(era.id) }), kinds.map((k) => {
        const res = results.get(`${era.id}/${k}`);
        const links = (res && res.links) || [];
        return h("td", null, h("button", {
          type: "button", class: "preview-cell", dataset: { era: era.id, kind: k },
          onclick: () => {
            pick = { era: era.id, kind: k };
            showPick();
            shown.scrollIntoView({ block: "nearest", behavior: "smooth" });
          },
        }, links.length ? links.map((l) => h("span", { class: `pv-chip n-${l.outcome}`, dataset: { platform: l.platform || "", kind: l.kind || "" } },
          `${siteName(l, platformName)}${l.kind === "token" ? ` ${t("tokenShort")}` : ""} · ${t(`outcomeShort_${l.outcome}`)}`)) : h("span", { class: "muted", text: res ? t("previewNoLinks") : "…" })));
      })));
    }
    grid.appendChild(h("table", { class: "preview-table" }, h("thead", null, head), body));
  };

  const run = async () => {
    const mine = ++gen;
    if (!input.value.trim() || showTextLength(input)) {
      // Cleared to paste another text: nothing to preview, and no error.
      // Too long: the counter under the field says so.
      results = new Map();
      clear(grid);
      clear(shown);
      return;
    }
    let answer;
    try {
      answer = await api.previewAll(input.value);
    } catch (err) {
      if (mine !== gen) return;
      // Stale results would not match the text: say so until it works again.
      results = new Map();
      clear(grid);
      clear(shown);
      grid.appendChild(h("p", { class: "form-error", role: "alert", text: err.status === 0 ? t("errorNetwork") : serverError(err.code, err.message) || t("previewFailed") }));
      return;
    }
    if (mine !== gen) return; // a newer text is on its way
    results = new Map((answer.results || []).map((r) => [`${r.era}/${r.chat}`, r]));
    drawGrid();
    showPick();
  };
  let timer = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(run, 250);
  });

  openModal({
    title: t("previewTitle"),
    className: "preview-modal",
    body: [h("p", { class: "muted", text: t("previewIntro") }), h("label", { for: "preview-text", class: "field-label", text: t("previewText") }), input, grid, shown],
    onClose: () => clearTimeout(timer),
  });
  drawGrid();
  run();
}


// counted is n, formatted by nf, with its noun, singular for one ("1 message", "3 messages").
function counted(nf, n, oneKey, manyKey) {
  n = n || 0;
  return n === 1 ? t(oneKey) : t(manyKey, { n: nf.format(n) });
}
async function trafficDialog() {
  const room = S.rooms.get(S.current);
  if (!room) return;
  let stats;
  try {
    stats = await api.stats(room.id);
  } catch (err) {
    fail(err);
    return;
  }
  if (S.current !== room.id) return; // the reader moved on while the stats loaded
  const outcomes = ["blocked", "hyperlink", "card"];
  const rows = new Map();
  for (const s of stats.stats || []) {
    const key = s.platform || "";
    if (!rows.has(key)) rows.set(key, { blocked: 0, hyperlink: 0, card: 0 });
    rows.get(key)[s.outcome] = (rows.get(key)[s.outcome] || 0) + s.count;
  }
  const nf = new Intl.NumberFormat(locale());
  let table;
  if (!rows.size) {
    table = h("p", { class: "muted", text: t("noLinks") });
  } else {
    const totals = { blocked: 0, hyperlink: 0, card: 0 };
    const body = h("tbody");
    for (const [pf, counts] of [...rows].sort((a, b) => platformName(a[0]).localeCompare(platformName(b[0])))) {
      let sum = 0;
      const cells = outcomes.map((o) => {
        sum += counts[o];
        totals[o] += counts[o];
        return h("td", { class: counts[o] ? `num n-${o}` : "num zero", text: nf.format(counts[o]) });
      });
      body.appendChild(h("tr", { dataset: { platform: pf } }, h("th", { scope: "row", text: platformName(pf) || t("otherSite") }), cells, h("td", { class: "num total", text: nf.format(sum) })));
    }
    const grand = outcomes.reduce((a, o) => a + totals[o], 0);
    table = h("table", { class: "stats" },
      h("thead", null, h("tr", null, h("th", { scope: "col", text: t("platform") }),
        outcomes.map((o) => h("th", { scope: "col", class: "num" }, h("span", { class: `badge-outcome o-${o}`, text: t(`outcomeShort_${o}`) }))),
        h("th", { scope: "col", class: "num", text: t("total") }))),
      body,
      h("tfoot", null, h("tr", null, h("th", { scope: "row", text: t("total") }),
        outcomes.map((o) => h("td", { class: "num", text: nf.format(totals[o]) })),
        h("td", { class: "num total", text: nf.format(grand) }))));
  }
  const mau = h("input", { id: "mau", type: "number", min: "0", step: "1000000", value: String(DEFAULT_MAU), inputmode: "numeric" });
  const share = h("input", { id: "share", type: "number", min: "0", max: "100", step: "0.1", value: String(DEFAULT_SHARE), inputmode: "decimal" });
  const out = h("output", { class: "pv", for: "mau share", "aria-live": "polite" });
  const mauHint = h("span", { class: "calc-hint" });
  const compact = h("span", { class: "pv-compact" });
  const update = () => {
    const users = Math.max(0, Number(mau.value) || 0);
    const rate = Math.min(100, Math.max(0, Number(share.value) || 0));
    const views = Math.round(users * rate / 100);
    out.textContent = nf.format(views);
    const cf = new Intl.NumberFormat(locale(), { notation: "compact", maximumFractionDigits: 2 });
    compact.textContent = `≈ ${cf.format(views)}`;
    mauHint.textContent = t("mauHint", { n: cf.format(users) });
  };
  mau.addEventListener("input", update);
  share.addEventListener("input", update);
  update();
  openModal({
    title: t("trafficTitle"),
    className: "traffic-modal",
    returnFocus: sameInHeader,
    body: [
      h("p", { class: "muted", text: `${t("trafficIntro")} ${t("statsSummary", { links: counted(nf, stats.links, "statsLinkOne", "statsLinks"), messages: counted(nf, stats.messages, "statsMessageOne", "statsMessages") })}` }),
      h("p", { class: "muted era-note", text: (t("shownUnder", { name: eraName(room.era) }) + t("fullStop") +
        (stats.samples ? t("samplesNote", { n: nf.format(stats.samples) }) : "")).trim() }),
      h("div", { class: "table-wrap" }, table),
      h("h3", { text: t("arithmetic") }),
      h("div", { class: "calc" },
        h("label", { for: "mau" }, h("span", { text: t("mau") }), mau, mauHint),
        h("span", { class: "op", "aria-hidden": "true", text: "×" }),
        h("label", { for: "share" }, h("span", { text: t("shareRate") }), share),
        h("span", { class: "op", "aria-hidden": "true", text: "=" }),
        h("div", { class: "calc-out" }, h("span", { text: t("pageViews") }), out, compact)),
      h("p", { class: "muted small", text: t("arithmeticNote") }),
    ],
  });
}

// otherPeople is everyone one can chat with, newest first: the people a
// demo visitor looks for have just joined.
function otherPeople() {
  const joined = (u) => Date.parse(u.created_at) || 0;
  return [...S.users.values()].filter((u) => u.id !== S.me.id && !u.bot).sort((a, b) => joined(b) - joined(a));
}

// personName is a person's name and when they joined, which tells two
// people of the same name apart: to the second where a class has several.
function personName(u, namesake) {
  const at = new Date(u.created_at);
  const time = Number.isNaN(at.getTime()) ? "" : namesake
    ? at.toLocaleString(locale(), { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : formatTime(u.created_at, true);
  // Two who joined in the same second still differ by their id.
  const joined = time ? t("joined", { time }) + (namesake ? ` · #${u.id.slice(0, 4)}` : "") : "";
  return h("span", { class: "pick-name" }, h("span", { text: u.name }),
    joined ? h("span", { class: "pick-joined", text: joined }) : null);
}

// namesakes returns a test for the people whose name someone else has too.
function namesakes(people) {
  const n = new Map();
  for (const u of people) n.set(u.name, (n.get(u.name) || 0) + 1);
  return (u) => n.get(u.name) > 1;
}

// peopleFilter is a search box that hides the rows (li elements carrying
// data-name) whose name does not contain what is typed.
function peopleFilter(list) {
  // form="": the box belongs to no form, so Enter in it never submits the
  // New group form around it (a group of one, made by a search).
  const input = h("input", { type: "search", class: "pick-filter", form: "", placeholder: t("findPerson"), "aria-label": t("findPerson") });
  input.addEventListener("input", () => {
    const q = input.value.trim().toLocaleLowerCase();
    for (const li of list.children) li.hidden = q !== "" && !li.dataset.name.toLocaleLowerCase().includes(q);
  });
  return input;
}

async function newChatDialog() {
  await refreshUsers(true);
  const others = otherPeople();
  const dup = namesakes(others);
  const list = h("ul", { class: "pick-list" });
  for (const u of others) {
    list.appendChild(h("li", { dataset: { name: u.name } }, h("button", {
      type: "button",
      class: "pick",
      dataset: { user: u.id },
      onclick: async () => {
        try {
          const { room } = await api.createDirect(u.id, getLang());
          upsertRoom(room);
          closeModal();
          location.hash = `#/rooms/${room.id}`;
        } catch (err) {
          fail(err);
        }
      },
    }, avatar(u.id, u.name, false), personName(u, dup(u)))));
  }
  openModal({
    title: t("newChatTitle"),
    className: "pick-modal",
    body: others.length ? [peopleFilter(list), list] : h("p", { class: "muted", text: t("noUsers") }),
  });
}

async function newGroupDialog() {
  await refreshUsers(true);
  const others = otherPeople();
  const dup = namesakes(others);
  const name = h("input", { id: "group-name", type: "text", ...charLimit(MAX_NAME), required: true, autofocus: true });
  const err = h("p", { class: "form-error", role: "alert" });
  const boxes = others.map((u) => h("li", { dataset: { name: u.name } }, h("label", { class: "check" },
    h("input", { type: "checkbox", value: u.id, name: "member" }),
    avatar(u.id, u.name, false),
    personName(u, dup(u)))));
  const checkList = h("ul", { class: "check-list" }, boxes);
  const lang = h("select", { id: "group-lang" },
    h("option", { value: "en", selected: getLang() === "en", text: t("langEn") }),
    h("option", { value: "zh", selected: getLang() === "zh", text: t("langZh") }));
  const legend = h("legend", { text: t("groupMembers") });
  // A class picks many: the count stays in view while the list scrolls.
  checkList.addEventListener("change", () => {
    const n = checkList.querySelectorAll("input:checked").length;
    legend.textContent = n ? t("groupMembersPicked", { n }) : t("groupMembers");
  });
  const form = h("form", { class: "group-form", novalidate: true },
    h("label", { for: "group-name", text: t("groupName") }), name,
    h("fieldset", null, legend,
      others.length ? [peopleFilter(checkList), checkList] : h("p", { class: "muted", text: t("noUsers") })),
    h("label", { for: "group-lang", text: t("groupLang") }), lang,
    err,
    formActions(t("create")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    if (!n) {
      err.textContent = t("groupNameMissing");
      name.focus();
      return;
    }
    const members = [...form.querySelectorAll('input[name="member"]:checked')].map((c) => c.value);
    try {
      const { room } = await api.createGroup(n, members, lang.value);
      upsertRoom(room);
      closeModal();
      location.hash = `#/rooms/${room.id}`;
    } catch (ex) {
      err.textContent = formError(ex);
    }
  });
  openModal({ title: t("newGroupTitle"), className: "group-modal", body: form });
}

// WALKTHROUGH_STEPS are the pauses between eras a teacher can pick: the
// first is the server's default, the others leave time to talk.
const WALKTHROUGH_STEPS = [0, 10, 20, 30];

// walkthroughDialog asks where the walkthrough plays (the open chat, which
// everyone in it sees, or a new group of one) and how long each era stays.
function walkthroughDialog() {
  const here = S.rooms.get(S.current || S.lastRoom);
  const step = h("select", { id: "walkthrough-step" },
    WALKTHROUGH_STEPS.map((s) => h("option", { value: String(s), text: s ? t("walkthroughStep", { n: s }) : t("walkthroughStepDefault") })));
  const err = h("p", { class: "form-error", role: "alert" });
  const where = h("fieldset", { class: "walkthrough-where" }, h("legend", { text: t("walkthroughWhere") }),
    here ? h("label", { class: "check" }, h("input", { type: "radio", name: "where", value: "here", checked: true }),
      h("span", { text: t("walkthroughHere", { name: roomTitle(here) }) })) : null,
    h("label", { class: "check" }, h("input", { type: "radio", name: "where", value: "new", checked: !here }),
      h("span", { text: t("walkthroughNew") })));
  const form = h("form", { class: "group-form walkthrough-form", novalidate: true },
    h("p", { class: "muted", text: t("walkthroughIntro") }),
    where,
    h("label", { for: "walkthrough-step", text: t("walkthroughPause") }), step,
    err,
    formActions(t("walkthroughPlay")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const inHere = here && form.querySelector('input[name="where"]:checked').value === "here";
    try {
      await runWalkthrough(inHere ? here.id : "", Number(step.value));
      closeModal();
    } catch (ex) {
      err.textContent = formError(ex);
    }
  });
  openModal({ title: t("walkthrough"), className: "walkthrough-modal", body: form });
}

// runWalkthrough plays the walkthrough in room id, or in a new group.
async function runWalkthrough(id, stepSeconds) {
  if (!id) {
    const time = new Date().toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit" });
    const { room } = await api.createGroup(t("walkthroughName", { time }), [], getLang());
    upsertRoom(room);
    id = room.id;
  }
  location.hash = `#/rooms/${id}`;
  await api.walkthrough(id, stepSeconds);
  toast(t("walkthroughStarted"));
}

// ---------- start ----------

// SIGNED_IN_COOKIE is set beside the HttpOnly session cookie, which
// scripts cannot see: without either it or a tab's own token there is no
// session to look up.
const SIGNED_IN_COOKIE = "linkwall_signed_in=";

async function boot() {
  if (!tabToken() && !document.cookie.split(";").some((c) => c.trim().startsWith(SIGNED_IN_COOKIE))) {
    showJoin(); // a first visit: no /api/v1/me request that can only answer 401
    return;
  }
  try {
    const { user } = await api.me();
    await startChat(user);
  } catch (err) {
    if (err instanceof APIError && err.status !== 401 && err.status !== 0) toast(err.message);
    showJoin();
  }
}

boot();
