// api.js — the REST half of API v1 (docs/protocol.md). A tab that joined
// keeps its own session token in sessionStorage and sends it as a Bearer
// token, so two tabs of one browser can chat as two people. A tab that did
// not join rides on the HttpOnly cookie of the browser's latest session.

const TOKEN_KEY = "linkwall.token";

/** tabToken returns this tab's session token, or "" to use the cookie. */
export function tabToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return ""; // storage disabled: the cookie still works
  }
}

function setTabToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the cookie still works
  }
}

/** APIError carries the server's {"error":{"code","message"}} and the HTTP status. */
export class APIError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
  }
}

async function call(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  const token = tabToken();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new APIError(0, "network", err.message);
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    // A body that is not JSON is reported by status below.
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new APIError(res.status, e.code, e.message);
  }
  return data;
}

const enc = encodeURIComponent;

export const api = {
  join: async (name) => {
    const res = await call("POST", "/api/v1/session", { name });
    setTabToken(res.token);
    return res;
  },
  logout: async () => {
    try {
      await call("DELETE", "/api/v1/session");
    } finally {
      setTabToken("");
    }
  },
  /** forgetTab drops this tab's session without ending it: another tab may use it. */
  forgetTab: () => setTabToken(""),
  me: () => call("GET", "/api/v1/me"),
  users: () => call("GET", "/api/v1/users"),
  rooms: () => call("GET", "/api/v1/rooms"),
  room: (id) => call("GET", `/api/v1/rooms/${enc(id)}`),
  createDirect: (userID, lang) => call("POST", "/api/v1/rooms", { kind: "direct", members: [userID], lang }),
  createGroup: (name, members, lang) => call("POST", "/api/v1/rooms", { kind: "group", name, members, lang }),
  messages: (id, after, limit) => call("GET", `/api/v1/rooms/${enc(id)}/messages?after=${after}&limit=${limit}`),
  setEra: (id, era) => call("PUT", `/api/v1/rooms/${enc(id)}/era`, { era }),
  setLang: (id, lang) => call("PUT", `/api/v1/rooms/${enc(id)}/lang`, { lang }),
  stats: (id) => call("GET", `/api/v1/rooms/${enc(id)}/stats`),
  walkthrough: (id, stepSeconds) => call("POST", `/api/v1/rooms/${enc(id)}/walkthrough`, stepSeconds ? { step_seconds: stepSeconds } : undefined),
  eras: () => call("GET", "/api/v1/eras"),
  previewAll: (text) => call("POST", "/api/v1/preview/all", { text }),
  platforms: () => call("GET", "/api/v1/platforms"),
};

/** PAGE is how many messages one history request asks for (the server's max is 1000). */
export const PAGE = 500;

/** allMessages loads a room's history after seq `after`, page by page. */
export async function allMessages(id, after = 0) {
  const out = [];
  for (;;) {
    const { messages = [] } = await api.messages(id, after, PAGE);
    out.push(...messages);
    if (messages.length < PAGE) return out;
    after = messages[messages.length - 1].seq;
  }
}
