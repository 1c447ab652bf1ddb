// render.js — turns message objects into DOM: bubbles, the three link
// outcomes, cards and "Why?" explanations. Every piece of message data is
// set with textContent or as an attribute value, never parsed as HTML.

import { h, isWebURL, pictureURL } from "./dom.js";
import { icon } from "./icons.js";
import { t, getLang, locale } from "./i18n.js";

const AVATAR_COLOURS = 8;

/** avatar is a square initial tile, coloured by a hash of the id. */
export function avatar(id, name, bot) {
  if (bot) return h("div", { class: "avatar avatar-bot", "aria-hidden": "true" }, icon("bot"));
  // FNV-1a of the name: the same person keeps a colour across sessions.
  let hash = 0x811c9dc5;
  for (const ch of String(name || id)) hash = Math.imul(hash ^ ch.codePointAt(0), 0x01000193) >>> 0;
  const initial = Array.from((name || "?").trim())[0] || "?";
  return h("div", { class: `avatar c${hash % AVATAR_COLOURS}`, "aria-hidden": "true", text: initial.toUpperCase() });
}

/** formatTime renders a timestamp the way chat apps do: time today, date otherwise. */
export function formatTime(iso, withDate) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const opts = { hour: "2-digit", minute: "2-digit" };
  if (!sameDay || withDate) Object.assign(opts, { year: "numeric", month: "short", day: "numeric" });
  return d.toLocaleString(locale(), opts);
}

/** timeSeparator is the centred grey time shown between bursts of messages. */
export function timeSeparator(iso) {
  return h("div", { class: "time-sep", role: "presentation" }, h("time", { datetime: iso, text: formatTime(iso) }));
}

// Where each link occurs in the text. Links carry the URL as it should be
// opened (scheme added, maybe normalised), so several spellings are tried.
function candidates(link) {
  const out = new Set();
  const add = (s) => s && out.add(s.toLowerCase());
  const u = link.url || "";
  add(u);
  const bare = u.replace(/^https?:\/\//i, "");
  add(bare);
  add(bare.replace(/\/$/, ""));
  add(u.replace(/\/$/, ""));
  try {
    add(decodeURI(u));
    add(decodeURI(bare));
  } catch {
    // Not decodable: the raw spellings above remain.
  }
  return [...out].sort((a, b) => b.length - a.length);
}

// URL_CHAR matches a character that would make an address longer (not
// punctuation that usually ends a sentence after one).
const URL_CHAR = /[A-Za-z0-9\-_~/?#=&%@+]/;

/** segments splits text into plain runs and runs that show link i. */
export function segments(text, links) {
  // Lower-cased for the search, but only where that keeps the length:
  // positions found in it cut the original text ("İ" lower-cases to two
  // UTF-16 units, which would shift every link after it).
  const lower = Array.from(text, (ch) => {
    const l = ch.toLowerCase();
    return l.length === ch.length ? l : ch;
  }).join("");
  const claimed = []; // [start, end, index]
  const overlaps = (s, e) => claimed.some(([a, b]) => s < b && e > a);
  let cursor = 0;
  links.forEach((link, i) => {
    let best = null;
    for (const c of candidates(link)) {
      for (const from of [cursor, 0]) {
        let at = lower.indexOf(c, from);
        while (at >= 0 && overlaps(at, at + c.length)) at = lower.indexOf(c, at + 1);
        if (at >= 0) {
          if (!best || at < best[0] || (at === best[0] && c.length > best[1] - best[0])) best = [at, at + c.length];
          break;
        }
      }
    }
    if (best) {
      claimed.push([best[0], best[1], i]);
      cursor = best[1];
    }
  });
  // The bot decides each address once: later copies of it in the text show
  // the same outcome (a blocked link pasted twice stays blocked). Only whole
  // copies, after every link has its place, so a longer address that begins
  // with a shorter one keeps its own.
  for (const [s, e, i] of [...claimed]) {
    const same = lower.slice(s, e);
    for (let at = lower.indexOf(same, e); at >= 0; at = lower.indexOf(same, at + same.length)) {
      const end = at + same.length;
      if (!overlaps(at, end) && !URL_CHAR.test(text.charAt(end))) claimed.push([at, end, i]);
    }
  }
  claimed.sort((a, b) => a[0] - b[0]);
  const out = [];
  let pos = 0;
  for (const [s, e, i] of claimed) {
    if (s > pos) out.push({ text: text.slice(pos, s) });
    out.push({ text: text.slice(s, e), link: i });
    pos = e;
  }
  if (pos < text.length) out.push({ text: text.slice(pos) });
  const placed = new Set(claimed.map((c) => c[2]));
  const unplaced = links.map((_, i) => i).filter((i) => !placed.has(i));
  return { parts: out, unplaced };
}

/**
 * linkElement renders one link in the text (blocked or hyperlink; a card's
 * own occurrence in the text is plain text, the card carries the outcome).
 */
function linkElement(link, text, ctx, msg) {
  const common = {
    dataset: { outcome: link.outcome, platform: link.platform || "", url: link.url || "" },
    title: link.url,
  };
  if (link.outcome === "blocked" || !isWebURL(link.url)) {
    // Blocked links, and share tokens that no browser can open, are not
    // links at all: activating them explains instead.
    const activate = (e) => {
      e.preventDefault();
      ctx.onLink(link, msg);
    };
    return h("span", {
      ...common,
      class: `lk lk-${link.outcome}${link.kind === "token" ? " lk-token" : ""}`,
      role: "button",
      tabindex: "0",
      "aria-label": `${t(`outcomeShort_${link.outcome}`)}: ${text}`,
      onclick: activate,
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") activate(e);
      },
    }, text);
  }
  return h("a", {
    ...common,
    class: `lk lk-${link.outcome}`,
    href: link.url,
    target: "_blank",
    rel: "noopener noreferrer",
    onclick: (e) => {
      e.preventDefault();
      ctx.onLink(link, msg);
    },
  }, text);
}

// cardDescription is the card's description in the page's language, where
// the card has one in Chinese.
function cardDescription(c) {
  return (getLang() === "zh" && typeof c.description_zh === "string" && c.description_zh) || c.description;
}

// siteName names the site of a link: its platform, or the host of another
// site, so a product team tells its own links apart.
export function siteName(link, platformName) {
  const name = platformName(link.platform);
  if (name) return name;
  try {
    return new URL(link.url).hostname.replace(/^www\./, "") || t("otherSite");
  } catch {
    return t("otherSite");
  }
}

// chipName names a link in its chip; a share token says so.
function chipName(link, ctx) {
  const name = siteName(link, ctx.platformName);
  return link.kind === "token" ? `${name} · ${t("tokenChip")}` : name;
}

// cardPicture is the card's thumbnail: a tile with the platform's initial,
// covered by the picture once it has loaded. The picture is probed with a
// detached Image and shown as a CSS background, so no <img> element ever
// enters the page (markup in messages cannot hide among real images) and a
// picture that cannot load (offline demo) leaves the tile, not a broken icon.
function cardPicture(link, c, ctx) {
  const tile = h("div", { class: `card-img card-img-none pf-${link.platform || "other"}`, "aria-hidden": "true" },
    h("span", { text: Array.from(ctx.platformName(link.platform) || "?")[0] }));
  const href = pictureURL(c.image);
  if (!href) return tile;
  const probe = new Image();
  probe.referrerPolicy = "no-referrer";
  probe.addEventListener("load", () => {
    tile.style.backgroundImage = `url("${href}")`;
    tile.classList.add("has-img");
  });
  probe.src = href;
  return tile;
}

function cardElement(link, ctx) {
  const c = link.card || {};
  const url = isWebURL(c.url) ? c.url : isWebURL(link.url) ? link.url : null;
  const img = cardPicture(link, c, ctx);
  const attrs = {
    class: "card",
    dataset: { outcome: "card", platform: link.platform || "", url: link.url || "" },
  };
  const body = [
    h("div", { class: "card-title", text: c.title || link.url }),
    h("div", { class: "card-main" },
      h("div", { class: "card-text" },
        cardDescription(c) ? h("div", { class: "card-desc", text: cardDescription(c) }) : null,
        c.price ? h("div", { class: "card-price", text: c.price }) : null),
      img),
    h("div", { class: "card-foot" }, icon("link", "card-foot-icon"),
      h("span", { class: "card-site", text: c.site_name || ctx.platformName(link.platform) || "" })),
  ];
  if (url) return h("a", { ...attrs, href: url, target: "_blank", rel: "noopener noreferrer" }, body);
  return h("div", attrs, body);
}

function whyButton(link, panel) {
  const btn = h("button", {
    type: "button",
    class: "why",
    "aria-expanded": "false",
    "aria-controls": panel.id,
    "aria-label": `${t("why")} ${link.url}`,
    dataset: { whyFor: link.url || "" },
    text: t("why"),
  });
  btn.addEventListener("click", () => {
    const open = panel.hidden;
    panel.hidden = !open;
    btn.setAttribute("aria-expanded", String(open));
  });
  return btn;
}

let panelSeq = 0;

function whyPanel(link, ctx) {
  const reason = getLang() === "zh" ? link.reason_zh || link.reason : link.reason || link.reason_zh;
  const platform = siteName(link, ctx.platformName);
  const row = (k, v, cls) => [h("dt", { text: t(k) }), h("dd", { class: cls, text: v })];
  return h("div", { class: "why-panel", id: `why-${++panelSeq}`, hidden: true, role: "note" },
    h("div", { class: "why-title" },
      h("span", { class: `badge-outcome o-${link.outcome}`, text: t(`outcomeShort_${link.outcome}`) }),
      h("span", { text: ` ${platform} · ` }),
      h("span", { class: "why-url", text: link.url })),
    h("dl", null,
      row("rule", link.rule || "—", "why-rule"),
      row("reason", reason || "—", "why-reason"),
      // A rule without a date has always held, unless the policy gives it
      // for hypothetical eras only: then it never did.
      row("since", link.since || (ctx.neverHeld && ctx.neverHeld(link.rule) ? t("sinceHypothetical") : t("sinceAlways")), "why-since"),
      link.source ? row("source", link.source, "why-source") : null));
}

/**
 * messageElement renders msg. ctx: meID, group (bool), platformName(id),
 * onLink(link, msg) (a blocked link or bare hyperlink was activated).
 */
export function messageElement(msg, ctx) {
  const links = Array.isArray(msg.links) ? msg.links : [];
  const sender = msg.sender || {};
  const own = msg.pending || sender.id === ctx.meID;
  const dataset = msg.pending ? { clientMsgId: msg.client_msg_id } : { seq: String(msg.seq) };

  if (msg.system) {
    const el = h("div", { class: "msg msg-system", dataset, role: "note" });
    el.appendChild(h("span", { class: "system-text", text: msg.text }));
    return el;
  }

  const { parts, unplaced } = segments(msg.text || "", links);
  const textEl = h("div", { class: "msg-text" });
  for (const p of parts) {
    if (p.link === undefined) {
      textEl.appendChild(document.createTextNode(p.text));
    } else {
      const link = links[p.link];
      textEl.appendChild(link.outcome === "card"
        ? h("span", { class: "lk-card-src", text: p.text })
        : linkElement(link, p.text, ctx, msg));
    }
  }

  const panels = h("div", { class: "why-panels" });
  const extras = h("div", { class: "msg-extras" });
  const whyRow = h("div", { class: "why-row" });
  let blocked = false;
  links.forEach((link, i) => {
    const panel = whyPanel(link, ctx);
    panels.appendChild(panel);
    if (link.outcome === "card") {
      extras.appendChild(h("div", { class: "card-wrap" }, cardElement(link, ctx), whyButton(link, panel)));
      return;
    }
    if (link.outcome === "blocked") blocked = true;
    if (unplaced.includes(i)) {
      textEl.appendChild(h("br"));
      textEl.appendChild(linkElement(link, link.kind === "token" ? `${t("token")}: ${link.url}` : link.url, ctx, msg));
    }
    whyRow.appendChild(h("span", { class: "why-chip" },
      icon(link.outcome === "blocked" ? "ban" : link.login_required ? "lock" : "link", "why-chip-icon"),
      h("span", { class: "why-chip-name", text: chipName(link, ctx) }),
      whyButton(link, panel)));
  });

  // A message that is only a card link shows just the card, as WeChat does.
  const onlyCards = links.length > 0 && !msg.links_truncated && links.every((l) => l.outcome === "card") &&
    parts.every((p) => p.link !== undefined || !p.text.trim());

  const bubble = h("div", { class: "bubble" });
  if (!onlyCards) bubble.appendChild(textEl);
  if (blocked) {
    bubble.appendChild(h("div", { class: "blocked-note" }, icon("ban", "note-icon"), h("span", { text: t("blockedNote") })));
  }
  // LinkBot's samples keep the era they illustrate: each says which.
  if (sender.bot && links.length && msg.era && ctx.eraName) {
    bubble.appendChild(h("div", { class: "sample-era" }, icon("clock", "note-icon"), h("span", { text: t("sampleEra", { name: ctx.eraName(msg.era) }) })));
  }
  if (whyRow.childNodes.length) bubble.appendChild(whyRow);
  if (msg.links_truncated) bubble.appendChild(h("div", { class: "blocked-note", text: t("linksTruncated") }));

  const showName = !own && (ctx.group || sender.bot);
  const body = h("div", { class: "msg-body" },
    showName ? h("div", { class: "msg-name" }, h("span", { text: sender.name || "" }),
      sender.bot ? h("span", { class: "badge-bot", text: t("bot") }) : null) : null,
    onlyCards ? null : bubble,
    extras.childNodes.length ? extras : null,
    panels,
    msg.pending ? pendingState(msg, ctx) : null);

  const el = h("div", {
    class: ["msg", own ? "msg-own" : "msg-other", sender.bot ? "msg-bot" : "", msg.pending ? "pending" : "", msg.failed ? "failed" : ""],
    dataset,
    title: msg.sent_at ? formatTime(msg.sent_at, true) : null,
  }, own ? null : avatar(sender.id, sender.name, sender.bot), body, own ? avatar(ctx.meID, ctx.meName, false) : null);
  return el;
}

function pendingState(msg, ctx) {
  if (!msg.failed) return h("div", { class: "msg-state", role: "status", text: t("sending") });
  return h("button", { type: "button", class: "msg-state failed", onclick: () => ctx.onRetry(msg), text: t("failed") });
}
