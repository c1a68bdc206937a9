// Small DOM helpers. Everything a person or the server wrote goes into the
// page through textContent (never innerHTML), so markup in a message, a
// nickname or a room name is shown as text and never interpreted.

/**
 * Create an element.
 * @param {string} tag
 * @param {{className?: string, text?: string, attrs?: Record<string, string>}} [options]
 * @param {Node[]} [children]
 */
export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined) node.textContent = options.text;
  for (const [name, value] of Object.entries(options.attrs || {})) {
    node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** Remove every child of a node. */
export function clear(node) {
  node.replaceChildren();
}

/** Formatters in the reader's locale and time zone, made once: making one
 * (which toLocaleTimeString does on every call) costs far more than
 * formatting, and a busy room formats a time per message. They hold no
 * state. */
const FORMATS = Object.freeze({
  time: new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" }),
  full: new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    second: "numeric",
  }),
});

/** "14:05" in the reader's locale and time zone, from an RFC 3339 timestamp. */
export function localTime(timestamp) {
  // new Date(null) is 1970, not "no time": notices without a time show none.
  if (timestamp === null || timestamp === undefined || timestamp === "") return "";
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return "";
  return FORMATS.time.format(date);
}

/** The full local date and time, for a tooltip. */
export function localDateTime(timestamp) {
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return "";
  return FORMATS.full.format(date);
}
