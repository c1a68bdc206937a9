// What a message body may look like beyond plain text: links, `inline
// code`, ``` code blocks ``` and the @names the server found in it. A body is cut into pieces with regular
// expressions and every piece becomes a DOM node built with createElement
// and textContent, so nothing a person wrote is ever parsed as HTML. Links
// are http and https only (a "javascript:" or "data:" URL stays text), open
// in a new tab and give the other site neither this page (noopener) nor its
// address (noreferrer).

/** ``` fenced ``` blocks (across lines); an unclosed fence stays text. */
const FENCE = /```([\s\S]*?)```/g;
/** `inline code` on one line. */
const INLINE_CODE = /`([^`\n]+)`/g;
/** Candidate links: an http(s) scheme, then anything up to white space. */
const URL_START = /\bhttps?:\/\/[^\s<>"'`]+/gi;
/** What ends a sentence rather than a link ("see https://x.test/a."). */
const TRAILING = /[.,;:!?'"*_]+$/;
const SCHEMES = Object.freeze(["http:", "https:"]);

/** "@name" as the server reads it: not inside a word or an address. */
const AT_NAME = /(?<![\p{L}\p{N}_@.])@([\p{L}\p{N}_.-]+)/gu;

/**
 * The nodes that show ``body``: text, <a>, <code> and <pre><code>; with
 * ``mentions`` (the message's list from the server), each "@name" in it
 * outside code is a <span class="at">, or a <mark class="at"> if it is in
 * ``mine`` (the names that mean the reader: their nickname, @room, @here).
 * @param {string} body
 * @param {{mentions?: string[], mine?: string[]}} [at]
 * @returns {Node[]}
 */
export function richText(body, at = {}) {
  const names = atNames(at.mentions);
  const mine = atNames(at.mine);
  const nodes = [];
  let from = 0;
  for (const match of body.matchAll(FENCE)) {
    if (match.index > from) nodes.push(...inline(body.slice(from, match.index), names, mine));
    nodes.push(codeBlock(match[1]));
    from = match.index + match[0].length;
  }
  if (from < body.length) nodes.push(...inline(body.slice(from), names, mine));
  return nodes;
}

/** A set of names folded for comparison ("@room" stays "@room"). */
function atNames(list) {
  const names = new Set();
  if (Array.isArray(list)) for (const name of list) if (typeof name === "string") names.add(name.toLowerCase());
  return names;
}

/** A code block; a first line that is one word (```python) names the
 * language and is not shown. */
function codeBlock(content) {
  let text = content;
  const language = /^([\w+#.-]+)\n/.exec(text);
  if (language) text = text.slice(language[0].length);
  text = text.replace(/^\n/, "").replace(/\n$/, "");
  const code = document.createElement("code");
  code.textContent = text;
  if (language) code.dataset.language = language[1];
  const pre = document.createElement("pre");
  pre.className = "code-block";
  pre.append(code);
  return pre;
}

/** Text with `inline code`; links and @names only outside code. */
function inline(text, names, mine) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(INLINE_CODE)) {
    if (match.index > at) nodes.push(...links(text.slice(at, match.index), names, mine));
    const code = document.createElement("code");
    code.textContent = match[1];
    nodes.push(code);
    at = match.index + match[0].length;
  }
  if (at < text.length) nodes.push(...links(text.slice(at), names, mine));
  return nodes;
}

/** Text with http(s) links made anchors. */
function links(text, names, mine) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(URL_START)) {
    const candidate = trimLink(match[0]);
    const href = safeHref(candidate);
    if (href === null) continue;
    if (match.index > at) nodes.push(...mentions(text.slice(at, match.index), names, mine));
    nodes.push(anchor(href, candidate));
    at = match.index + candidate.length;
  }
  if (at < text.length) nodes.push(...mentions(text.slice(at), names, mine));
  return nodes;
}

/** Text with the @names of the message's mentions set apart. */
function mentions(text, names, mine) {
  if (names.size === 0) return [document.createTextNode(text)];
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(AT_NAME)) {
    // Trailing "." and "-" are punctuation, as the server reads them.
    const name = match[1].replace(/[.-]+$/, "");
    const folded = name.toLowerCase();
    const key = folded === "room" || folded === "here" ? `@${folded}` : folded;
    if (!name || !names.has(key)) continue;
    if (match.index > at) nodes.push(document.createTextNode(text.slice(at, match.index)));
    const node = document.createElement(mine.has(key) ? "mark" : "span");
    node.className = "at";
    node.textContent = `@${name}`;
    nodes.push(node);
    at = match.index + 1 + name.length;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

/** Drop punctuation that ends the sentence, and a closing bracket that
 * closes something opened before the link: "(see https://x.test/a)". */
function trimLink(candidate) {
  let link = candidate.replace(TRAILING, "");
  for (const [open, close] of [
    ["(", ")"],
    ["[", "]"],
  ]) {
    while (link.endsWith(close) && count(link, close) > count(link, open)) {
      link = link.slice(0, -1).replace(TRAILING, "");
    }
  }
  return link;
}

function count(text, char) {
  return text.split(char).length - 1;
}

/** The URL to link to, or null if it is not a well-formed http(s) URL. */
export function safeHref(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  return SCHEMES.includes(url.protocol) && url.hostname ? url.href : null;
}

function anchor(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  return a;
}
