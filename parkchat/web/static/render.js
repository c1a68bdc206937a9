// How conversations look: functions that build DOM nodes for the entries of
// a conversation (messages, notices, collapsed joins and leaves) and for the
// sidebar and people lists. They decide nothing and keep no state (the
// modules that own a room or a conversation call them; messagelog.js decides
// which entries have nodes), and they are the only code that knows the
// markup the style sheet and the browser tests rely on: class names,
// data-id, the ARIA roles. Everything people or the server wrote goes in
// with textContent (dom.js) or as the nodes of richtext.js, never as markup;
// every name and message body is isolated for bidirectional text (dir=auto
// or <bdi>), so a right-to-left message reads right to left and a stray
// U+202E cannot reorder anything outside its own element.

import { el, localDateTime, localTime } from "./dom.js";
import { richText } from "./richtext.js";

// -- entries of a conversation --------------------------------------------------

/** The node of one entry of a MessageLog (see messagelog.js for the kinds). */
export function entryNode(entry) {
  if (entry.kind === "message") return messageItem(entry);
  if (entry.kind === "presence") return presenceItem(entry);
  return systemItem(entry.text, entry.timestamp);
}

/**
 * A message: time, sender, text.
 * @param {object} m  {id, seq, username, guest, body, timestamp, mine, mention,
 *   mentions, atMe, edited_at, editable, editing, draft, target,
 *   state: null | "pending" | "unconfirmed" | "failed", error}
 * A guest's name (no account: anyone may have taken it) is followed by a
 * "guest" badge, as text.
 */
export function messageItem(m) {
  const classes = ["msg"];
  if (m.mine) classes.push("mine");
  if (m.mention) classes.push("mention");
  if (m.target) classes.push("target");
  if (m.state) classes.push(m.state === "unconfirmed" ? "pending unconfirmed" : m.state);
  const time = el("time", { className: "msg-time", text: timeText(m) });
  if (m.timestamp) {
    time.dateTime = m.timestamp;
    time.title = localDateTime(m.timestamp);
  }
  const body = m.editing
    ? editBox(m)
    : el("div", { className: "msg-body", attrs: { dir: "auto" } }, richText(m.body, { mentions: m.mentions, mine: m.atMe }));
  const user = el("span", { className: "msg-user", text: m.username, attrs: { dir: "auto" } });
  // One grid cell for the sender: the name, and for a guest its badge.
  const sender = m.guest
    ? el("span", { className: "msg-sender" }, [
        user,
        " ",
        el("span", { className: "guest-badge", text: "guest", attrs: { title: "not a registered account" } }),
      ])
    : user;
  const li = el("li", { className: classes.join(" ") }, [
    time,
    sender,
    body,
  ]);
  if (m.edited_at && !m.editing) {
    const edited = el("span", { className: "msg-edited", text: "(edited)" });
    const when = localDateTime(m.edited_at);
    if (when) edited.title = `Edited ${when}`;
    li.append(edited);
  }
  if (m.state === "failed") li.append(el("span", { className: "msg-error", text: m.error }));
  if (m.editable && !m.editing && !m.state) li.append(messageActions());
  if (m.id !== undefined && m.id !== null) li.dataset.id = String(m.id);
  return li;
}

/** "Edit" and "Delete" on one of your messages (editing.js acts on them). */
function messageActions() {
  return el("span", { className: "msg-actions" }, [
    el("button", { className: "linkish small", text: "Edit", attrs: { type: "button", "data-action": "edit" } }),
    el("button", { className: "linkish small", text: "Delete", attrs: { type: "button", "data-action": "delete" } }),
  ]);
}

/** A message being edited: a box with its text (Enter saves, Escape
 * cancels), and the same as buttons. */
function editBox(m) {
  const box = el("textarea", {
    className: "edit-box",
    attrs: { "aria-label": "Edit your message", rows: String(Math.min(6, m.draft.split("\n").length)), dir: "auto" },
  });
  box.value = m.draft;
  return el("div", { className: "msg-body editing" }, [
    box,
    el("span", { className: "edit-buttons" }, [
      el("button", { className: "small", text: "Save", attrs: { type: "button", "data-action": "save" } }),
      el("button", { className: "secondary small", text: "Cancel", attrs: { type: "button", "data-action": "cancel-edit" } }),
      el("span", { className: "hint", text: "Enter saves, Escape cancels" }),
    ]),
  ]);
}

function timeText(m) {
  if (m.state === "failed") return "!";
  if (m.state === "pending" || (m.state === "unconfirmed" && !m.timestamp)) return "…";
  return localTime(m.timestamp);
}

/** A line from the page rather than from a person (the beginning, you joined). */
export function systemItem(text, timestamp) {
  const time = el("time", { className: "msg-time", text: localTime(timestamp) });
  if (timestamp) time.dateTime = timestamp;
  return el("li", { className: "system" }, [time, el("span", { className: "system-text", text })]);
}

/** Consecutive joins and leaves as one line: "alice and bob joined",
 * "carol, dave and 3 others left; erin joined and left". */
export function presenceItem(entry) {
  const time = el("time", { className: "msg-time", text: localTime(entry.timestamp) });
  if (entry.timestamp) time.dateTime = entry.timestamp;
  const text = el("span", { className: "system-text" }, presenceSummary(entry.events));
  const li = el("li", { className: "system presence" }, [time, text]);
  const everyone = [...new Set(entry.events.map((e) => e.name))];
  if (everyone.length > PRESENCE_NAMES) li.title = everyone.join(", ");
  return li;
}

/** How many names a presence line spells out before "and N others". */
const PRESENCE_NAMES = 3;
const PRESENCE_VERBS = Object.freeze([
  ["joined", "joined"],
  ["left", "left"],
  ["came", "joined and left"],
  ["back", "left and came back"],
]);

/** The nodes of a presence line, from its events in order ({name, verb}). */
export function presenceSummary(events) {
  // What each person did in the run: the first and the last thing decide.
  const first = new Map();
  const last = new Map();
  for (const { name, verb } of events) {
    if (!first.has(name)) first.set(name, verb);
    last.set(name, verb);
  }
  const buckets = { joined: [], left: [], came: [], back: [] };
  for (const [name, verb] of first) {
    const end = last.get(name);
    if (verb === end) buckets[verb === "join" ? "joined" : "left"].push(name);
    else buckets[verb === "join" ? "came" : "back"].push(name);
  }
  const parts = [];
  for (const [key, words] of PRESENCE_VERBS) {
    if (buckets[key].length === 0) continue;
    if (parts.length > 0) parts.push("; ");
    parts.push(...nameList(buckets[key]), ` ${words}`);
  }
  return parts;
}

/** "alice", "alice and bob", "alice, bob and carol", "alice, bob and 3
 * others": each name isolated in a <bdi>. */
export function nameList(names) {
  const shown = names.length > PRESENCE_NAMES ? names.slice(0, 2) : names;
  const rest = names.length - shown.length;
  const parts = [];
  shown.forEach((name, i) => {
    if (i > 0) parts.push(i === shown.length - 1 && rest === 0 ? " and " : ", ");
    parts.push(el("bdi", { text: name }));
  });
  if (rest > 0) parts.push(` and ${rest} others`);
  return parts;
}

// -- the sidebar and the conversation header ----------------------------------

/** "# lobby" or "@ bob" (as text, for titles and placeholders). */
export function conversationTitle(conv) {
  return conv.kind === "room" ? `# ${conv.name}` : `@ ${conv.name}`;
}

/** The same as nodes, the name isolated for bidirectional text. */
export function conversationTitleNodes(conv) {
  return [conv.kind === "room" ? "# " : "@ ", el("bdi", { text: conv.name })];
}

/** The line under the title (the topic has its own line). */
export function conversationMeta(conv) {
  if (conv.kind === "room") return conv.joined ? `${conv.total} online` : "joining…";
  return "Direct messages";
}

/** A sidebar entry: a button in a list item (data-room / data-dm name it). */
export function conversationEntry(conv) {
  const data = conv.kind === "room" ? "data-room" : "data-dm";
  const button = el("button", { className: "conv", attrs: { type: "button", [data]: conv.name } });
  return { button, item: el("li", {}, [button]) };
}

/** Fill a sidebar button: the name, the unread count, whether it is open
 * or muted. The count's words are in the accessible name ("# lobby 3
 * unread"), the digits on screen. */
export function fillConversationButton(button, conv, isCurrent, muted) {
  const children = [el("span", { className: "conv-name" }, conversationTitleNodes(conv))];
  if (muted) children.push(el("span", { className: "muted-mark", text: "muted" }));
  if (conv.mentions > 0) {
    children.push(
      el("span", { className: "badge at-badge" }, [
        `@${conv.mentions}`,
        el("span", { className: "visually-hidden", text: conv.mentions === 1 ? " mention" : " mentions" }),
      ]),
    );
  }
  if (conv.unread > 0) {
    children.push(
      el("span", { className: "badge" }, [
        String(conv.unread),
        el("span", { className: "visually-hidden", text: " unread" }),
      ]),
    );
  }
  button.replaceChildren(...children);
  button.classList.toggle("muted", muted);
  if (isCurrent) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
}

/** Someone in the people list: a button that opens a DM, or yourself. */
export function personItem(name, isMe, onPick) {
  if (isMe) return el("li", { className: "me" }, [el("span", {}, [el("bdi", { text: name }), " (you)"])]);
  const button = el("button", {
    className: "person",
    attrs: { type: "button", title: `Send ${name} a direct message` },
  }, [el("bdi", { text: name })]);
  button.addEventListener("click", () => onPick(name));
  return el("li", {}, [button]);
}

/** "bob is typing…", "bob, carol are typing…", or nothing (as nodes). */
export function typingNodes(names) {
  if (names.length === 0) return [];
  const parts = [];
  names.forEach((name, i) => {
    if (i > 0) parts.push(", ");
    parts.push(el("bdi", { text: name }));
  });
  parts.push(names.length === 1 ? " is typing…" : " are typing…");
  return parts;
}

/** An entry of the room directory: a button that joins the room; its name
 * is what it shows ("# garden 1 online"). */
export function directoryItem(room, count, onJoin) {
  const button = el(
    "button",
    {
      className: "conv",
      attrs: { type: "button", "data-directory-room": room, title: `Join ${room}` },
    },
    [
      el("span", { className: "conv-name" }, ["# ", el("bdi", { text: room })]),
      el("span", { className: "count" }, [String(count), el("span", { className: "visually-hidden", text: " online" })]),
    ],
  );
  button.addEventListener("click", () => onJoin(room));
  return el("li", {}, [button]);
}

export function directoryEmpty() {
  return el("li", { className: "hint", text: "Nobody is in any room yet." });
}
