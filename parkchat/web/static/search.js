// Searching messages (docs/websocket.md, "search"): the search box in the
// room list, its results, and opening a result in its conversation. The
// server says where the words matched as [start, end) offsets in code
// points; they are drawn as <mark> elements holding text nodes, never as
// markup, so a result is as safe as a message. A result opens its room or
// direct conversation at that message, with the messages around it (the
// conversation's owner loads them if they are not in memory).

import { clear, el, localDateTime, localTime } from "./dom.js";

/** Results asked for at a time. */
const PAGE = 20;
/** A long body is shown as this many code points around its first match. */
const SNIPPET = 200;
const SNIPPET_BEFORE = 60;

/**
 * The nodes that show ``body`` with the code-point ranges ``ranges``
 * ([[start, end), ...]) in <mark>; ranges out of bounds, reversed or
 * overlapping are cut to what makes sense. A body longer than SNIPPET is
 * cut to a snippet around the first match, with "…" where it was cut.
 * @param {string} body
 * @param {unknown} ranges
 * @returns {Node[]}
 */
export function highlighted(body, ranges) {
  let chars = Array.from(body);
  let marks = (Array.isArray(ranges) ? ranges : [])
    .filter((r) => Array.isArray(r) && Number.isInteger(r[0]) && Number.isInteger(r[1]) && r[0] < r[1])
    .map((r) => [Math.max(0, r[0]), Math.min(chars.length, r[1])])
    .filter((r) => r[0] < r[1])
    .sort((a, b) => a[0] - b[0]);
  const nodes = [];
  if (chars.length > SNIPPET) {
    const from = marks.length > 0 ? Math.max(0, Math.min(marks[0][0] - SNIPPET_BEFORE, chars.length - SNIPPET)) : 0;
    const to = Math.min(chars.length, from + SNIPPET);
    if (from > 0) nodes.push(document.createTextNode("…"));
    chars = chars.slice(from, to);
    marks = marks.map(([s, e]) => [Math.max(0, s - from), Math.min(chars.length, e - from)]).filter((r) => r[0] < r[1]);
    const tail = to < Array.from(body).length;
    nodes.push(...pieces(chars, marks));
    if (tail) nodes.push(document.createTextNode("…"));
    return nodes;
  }
  return pieces(chars, marks);
}

function pieces(chars, marks) {
  const nodes = [];
  let at = 0;
  for (const [start0, end] of marks) {
    const start = Math.max(at, start0);
    if (end <= start) continue;
    if (start > at) nodes.push(document.createTextNode(chars.slice(at, start).join("")));
    nodes.push(el("mark", { text: chars.slice(start, end).join("") }));
    at = end;
  }
  if (at < chars.length) nodes.push(document.createTextNode(chars.slice(at).join("")));
  return nodes;
}

/** Where a result is: "# garden" or "@ bob". */
function whereText(result) {
  return typeof result.room === "string" ? `# ${result.room}` : `@ ${result.with}`;
}

/** One result: a button that opens it; its name says where, who and what. */
export function resultItem(result, onOpen) {
  const time = el("time", { className: "msg-time", text: localTime(result.timestamp) });
  if (result.timestamp) {
    time.dateTime = result.timestamp;
    time.title = localDateTime(result.timestamp);
  }
  const button = el("button", { className: "result", attrs: { type: "button" } }, [
    el("span", { className: "result-head" }, [
      el("bdi", { className: "result-where", text: whereText(result) }),
      " ",
      el("bdi", { className: "result-user", text: String(result.username) }),
      " ",
      time,
    ]),
    el("span", { className: "result-body", attrs: { dir: "auto" } }, highlighted(result.body, result.highlights)),
  ]);
  button.dataset.id = String(result.id);
  button.addEventListener("click", () => onOpen(result));
  return el("li", {}, [button]);
}

export class Search {
  /**
   * @param {object} options
   * @param {object} options.elements  form, input, title, results, more, close
   * @param {import("./client.js").ChatClient} options.client
   * @param {import("./view.js").PageView} options.view
   * @param {(result: object) => void} options.onOpen  a result was picked
   */
  constructor({ elements, client, view, onOpen }) {
    this.ui = elements;
    this.client = client;
    this.view = view;
    this.onOpen = onOpen;
    /** The words of the search shown, and the cursor of its next page. */
    this.query = "";
    this.next = null;
    elements.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.search(elements.input.value.trim());
    });
    elements.more.addEventListener("click", () => this.more());
    elements.close.addEventListener("click", () => this.reset());
  }

  search(query) {
    if (!query) {
      this.view.showAlert("Type the words to look for.", undefined, { passing: true });
      this.ui.input.focus();
      return;
    }
    this.query = query;
    this.next = null;
    if (this.client.request({ type: "search", q: query, limit: PAGE }, { kind: "search", query, more: false }) === null) {
      this.view.showAlert("Not connected right now.", undefined, { passing: true });
    }
  }

  more() {
    if (!this.next) return;
    const frame = { type: "search", q: this.query, limit: PAGE, before: this.next };
    this.client.request(frame, { kind: "search", query: this.query, more: true });
  }

  /** "search": a page of results. */
  onResults(frame, what) {
    if (!what || what.kind !== "search" || what.query !== this.query) return;
    const { results, title, more, close } = this.ui;
    if (!what.more) clear(results);
    const found = Array.isArray(frame.results) ? frame.results : [];
    for (const result of found) {
      if (!result || typeof result.body !== "string" || typeof result.id !== "number") continue;
      if (typeof result.room !== "string" && typeof result.with !== "string") continue;
      results.append(resultItem(result, (r) => this.onOpen(r)));
    }
    if (results.childElementCount === 0) {
      results.append(el("li", { className: "hint", text: `Nothing found for “${this.query}”.` }));
    }
    this.next = typeof frame.next === "string" ? frame.next : null;
    title.textContent = `Results for “${this.query}”`;
    title.hidden = results.hidden = close.hidden = false;
    more.hidden = this.next === null;
  }

  /** Logged out, or "Clear": no results shown. */
  reset() {
    const { results, title, more, close, input } = this.ui;
    this.query = "";
    this.next = null;
    clear(results);
    input.value = "";
    title.hidden = results.hidden = more.hidden = close.hidden = true;
  }
}
