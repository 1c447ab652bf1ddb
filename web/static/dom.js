// dom.js — builds elements without ever parsing HTML: every string given
// here ends up as a text node or an attribute value, so user-supplied data
// cannot become markup.

/**
 * h creates an element. attrs: "class", "text", "dataset" (object),
 * "on<event>" (listener), boolean properties (hidden, disabled, checked…),
 * anything else as an attribute. Children: nodes, strings (as text), arrays,
 * null/undefined/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

const props = new Set(["hidden", "disabled", "checked", "readOnly", "value", "selected", "multiple", "required"]);

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (props.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** clear removes every child of el. */
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/**
 * pictureURL is the address of a card's picture, normalised (quotes
 * percent-encoded), or null: an absolute http(s) URL, or a path on this
 * server (the demo catalogue's own pictures).
 */
export function pictureURL(s) {
  if (typeof s === "string" && s.startsWith("/")) {
    // The URL parser drops tabs and newlines ("/\t/host" is "//host"):
    // what it makes of the path must still be on this server.
    const u = new URL(s, location.origin);
    return u.origin === location.origin ? u.href : null;
  }
  return isWebURL(s) ? new URL(s).href : null;
}

/** isWebURL reports whether s is an absolute http(s) URL. */
export function isWebURL(s) {
  if (typeof s !== "string") return false;
  try {
    const u = new URL(s);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}
