// ws.js — the WebSocket half of API v1, with reconnection. Frames may hold
// several JSON objects separated by "\n". After every (re)connect the
// server sends "hello"; the app then asks for what it missed with "resume".

import { tabToken } from "./api.js";

const BACKOFF_MIN_MS = 500; // first retry delay
const BACKOFF_MAX_MS = 15000; // cap: a demo should come back quickly once the server does
const HEARTBEAT_MS = 25000; // application ping, so a dead path is noticed
const SILENCE_MS = 60000; // nothing heard for this long: the connection is treated as dead

// Close codes after which retrying cannot help: the session is gone
// (4001 unauthorized, docs/protocol.md).
const AUTH_CLOSE_CODES = new Set([4001]);
// The person has too many connections open (4009); retrying works once
// another tab closes, so the page says why it waits.
export const TOO_MANY_CONNECTIONS = 4009;

export class Socket {
  /**
   * handlers: onFrame(obj), onDown(code) (connection lost with close code, retrying),
   * onAuthLost() (the session is no longer valid), onRefused(n) (the n-th
   * handshake in a row failed: the browser cannot tell a 401 from an outage).
   */
  constructor(handlers) {
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = 0;
    this.heartbeat = 0;
    this.lastHeard = 0;
    this.stopped = false;
    this.up = false;
    this.refused = 0; // handshakes in a row that failed before "open"
    this.parked = false; // stopped while the page sits in the back/forward cache
    // A page kept in the back/forward cache keeps its socket open: the
    // server would hold a connection (one of the person's few) that nobody
    // reads. Close it when the page is hidden that way, and connect again
    // (then resume) when it is shown.
    this.onPageHide = (ev) => {
      if (ev.persisted && !this.stopped) {
        this.stop();
        this.parked = true;
        this.h.onDown(); // shown again, the page says it is reconnecting until the hello
      }
    };
    this.onPageShow = (ev) => {
      if (ev.persisted && this.parked) {
        this.parked = false;
        this.start();
      }
    };
    addEventListener("pagehide", this.onPageHide);
    addEventListener("pageshow", this.onPageShow);
  }

  /** dispose stops the socket for good (sign-out): nothing restarts it. */
  dispose() {
    this.stop();
    this.parked = false;
    removeEventListener("pagehide", this.onPageHide);
    removeEventListener("pageshow", this.onPageShow);
  }

  start() {
    this.stopped = false;
    this.parked = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.up = false;
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    // A tab with its own session authenticates by frame, so the browser's
    // cookie (perhaps another tab's person) does not decide who it is.
    const token = tabToken();
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/ws${token ? "?auth=frame" : ""}`);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      if (token) ws.send(JSON.stringify({ type: "auth", token }));
      opened = true;
      this.refused = 0;
      this.up = true;
      this.lastHeard = Date.now();
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    });
    ws.addEventListener("message", (ev) => {
      this.lastHeard = Date.now();
      if (typeof ev.data !== "string") return;
      for (const line of ev.data.split("\n")) {
        if (!line.trim()) continue;
        let obj;
        try {
          obj = JSON.parse(line);
        } catch {
          continue; // a malformed line must not stop the others
        }
        if (obj.type === "hello") this.attempt = 0;
        this.h.onFrame(obj);
      }
    });
    ws.addEventListener("close", (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.up = false;
      clearInterval(this.heartbeat);
      if (this.stopped) return;
      if (AUTH_CLOSE_CODES.has(ev.code)) {
        this.h.onAuthLost();
        return;
      }
      this.h.onDown(ev.code);
      if (!opened && this.h.onRefused) this.h.onRefused(++this.refused);
      this.retry();
    });
  }

  beat() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > SILENCE_MS) {
      this.ws.close(4000, "silent");
      return;
    }
    this.send({ type: "ping" });
  }

  retry() {
    clearTimeout(this.timer);
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt++;
    // Jitter spreads reconnects when a server restart drops everyone at once.
    const delay = base / 2 + Math.random() * (base / 2);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** send writes obj if connected and reports whether it was written. */
  send(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  /** connected reports whether the socket is open. */
  get connected() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }
}
