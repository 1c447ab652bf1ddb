// icons.js — small inline SVG icons (24×24 stroke paths), built with
// createElementNS so no markup is parsed and no extra request is made.

const NS = "http://www.w3.org/2000/svg";

const paths = {
  person: ["M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8z", "M4 21c0-4 3.6-6 8-6s8 2 8 6"],
  group: ["M9 11a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7z", "M2 20c0-3.5 3-5.5 7-5.5s7 2 7 5.5", "M16 4.5a3.5 3.5 0 0 1 0 6.5", "M18 14.8c2.4.6 4 2.3 4 5.2"],
  bot: ["M6 9h12v10H6z", "M12 4v5", "M12 4h.01", "M9.5 13.5h.01", "M14.5 13.5h.01", "M10 16.5h4", "M3 13v3", "M21 13v3"],
  back: ["M15 5l-7 7 7 7"],
  send: ["M4 12l16-8-6 16-2-7z"],
  plus: ["M12 5v14", "M5 12h14"],
  chat: ["M4 5h16v11H9l-5 4z"],
  clock: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M12 7v5l3 2"],
  chart: ["M5 20V10", "M12 20V4", "M19 20v-7"],
  play: ["M7 4l13 8-13 8z"],
  globe: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M3 12h18", "M12 3c2.5 2.5 3.5 5.5 3.5 9s-1 6.5-3.5 9c-2.5-2.5-3.5-5.5-3.5-9s1-6.5 3.5-9z"],
  logout: ["M15 4h4v16h-4", "M10 8l-4 4 4 4", "M6 12h11"],
  close: ["M6 6l12 12", "M18 6L6 18"],
  ban: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M5.6 5.6l12.8 12.8"],
  lock: ["M6 11h12v9H6z", "M8.5 11V8a3.5 3.5 0 0 1 7 0v3"],
  link: ["M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1", "M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1"],
  info: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M12 11v5", "M12 8h.01"],
  copy: ["M9 9h11v11H9z", "M5 15H4V4h11v1"],
};

/** icon returns an aria-hidden SVG element for name. */
export function icon(name, cls) {
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", cls ? `icon ${cls}` : "icon");
  for (const d of paths[name] || []) {
    const p = document.createElementNS(NS, "path");
    p.setAttribute("d", d);
    svg.appendChild(p);
  }
  return svg;
}
