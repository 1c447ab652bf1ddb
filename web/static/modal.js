// modal.js — one accessible dialog at a time: focus moves in and is kept
// inside, Escape or the backdrop closes it, focus returns where it was.

import { h } from "./dom.js";
import { icon } from "./icons.js";
import { t } from "./i18n.js";

let current = null;

// The key held down, if any. A dialog opened by a key press must not take
// the rest of that press: the same Enter would press the button that
// receives focus (a button acts on Enter's keypress and Space's keyup).
let keyHeld = null;
document.addEventListener("keydown", (e) => { keyHeld = e.key; }, true);
document.addEventListener("keyup", () => { keyHeld = null; }, true);

function swallowRestOfPress(el, key) {
  const stop = (e) => {
    if (e.key === key) e.preventDefault();
  };
  const end = (e) => {
    if (e.key !== key) return;
    stop(e);
    el.removeEventListener("keypress", stop, true);
    el.removeEventListener("keyup", end, true);
  };
  el.addEventListener("keypress", stop, true);
  el.addEventListener("keyup", end, true);
}

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select, textarea, [tabindex="0"]';

/**
 * openModal shows a dialog. opts: title (string), body (nodes), className,
 * onClose, returnFocus(old) (finds where focus goes back to when old, the
 * element that had it, was redrawn meanwhile). Returns a function that closes it.
 */
export function openModal({ title, body, className, onClose, returnFocus }) {
  closeModal();
  const previous = document.activeElement;
  const titleId = `modal-title-${Date.now()}`;
  const dialog = h("div", {
    class: ["modal", className],
    role: "dialog",
    "aria-modal": "true",
    "aria-labelledby": titleId,
  },
  h("div", { class: "modal-head" },
    h("h2", { id: titleId, class: "modal-title", text: title }),
    h("button", { type: "button", class: "icon-btn modal-close", "aria-label": t("close"), onclick: () => closeModal() }, icon("close"))),
  h("div", { class: "modal-body" }, body));
  const backdrop = h("div", { class: "modal-backdrop" }, dialog);
  backdrop.addEventListener("mousedown", (e) => {
    if (e.target === backdrop) closeModal();
  });
  backdrop.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      closeModal();
    } else if (e.key === "Tab") {
      trap(e, dialog);
    }
  });
  if (keyHeld === "Enter" || keyHeld === " ") swallowRestOfPress(backdrop, keyHeld);
  document.body.appendChild(backdrop);
  current = { backdrop, previous, onClose, returnFocus };
  const first = dialog.querySelector("[autofocus]") || dialog.querySelector(".modal-body").querySelector(FOCUSABLE) || dialog.querySelector(FOCUSABLE);
  if (first) first.focus();
  return closeModal;
}

function trap(e, dialog) {
  const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null);
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  if (e.shiftKey && document.activeElement === first) {
    e.preventDefault();
    last.focus();
  } else if (!e.shiftKey && document.activeElement === last) {
    e.preventDefault();
    first.focus();
  }
}

/** closeModal closes the open dialog, if any. */
export function closeModal() {
  if (!current) return;
  const { backdrop, previous, onClose, returnFocus } = current;
  current = null;
  backdrop.remove();
  if (onClose) onClose();
  const back = previous && previous.isConnected ? previous : previous && returnFocus && returnFocus(previous);
  if (back && typeof back.focus === "function") back.focus();
}

/** modalOpen reports whether a dialog is shown. */
export function modalOpen() {
  return current !== null;
}

// Escape closes the dialog even when focus has left it (e.g. after a click on the page).
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && current) closeModal();
});
