// What a message body may look like beyond plain text: links, `inline
// code` and ``` code blocks ```. A body is cut into pieces with regular
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

/**
 * The nodes that show ``body``: text, <a>, <code> and <pre><code>.
 * @param {string} body
 * @returns {Node[]}
 */
export function richText(body) {
  const nodes = [];
  let at = 0;
  for (const match of body.matchAll(FENCE)) {
    if (match.index > at) nodes.push(...inline(body.slice(at, match.index)));
    nodes.push(codeBlock(match[1]));
    at = match.index + match[0].length;
  }
  if (at < body.length) nodes.push(...inline(body.slice(at)));
  return nodes;
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

/** Text with `inline code`; links only outside code. */
function inline(text) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(INLINE_CODE)) {
    if (match.index > at) nodes.push(...links(text.slice(at, match.index)));
    const code = document.createElement("code");
    code.textContent = match[1];
    nodes.push(code);
    at = match.index + match[0].length;
  }
  if (at < text.length) nodes.push(...links(text.slice(at)));
  return nodes;
}

/** Text with http(s) links made anchors. */
function links(text) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(URL_START)) {
    const candidate = trimLink(match[0]);
    const href = safeHref(candidate);
    if (href === null) continue;
    if (match.index > at) nodes.push(document.createTextNode(text.slice(at, match.index)));
    nodes.push(anchor(href, candidate));
    at = match.index + candidate.length;
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
