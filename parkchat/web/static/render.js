// How conversations look: functions that build or update DOM nodes for
// messages, notices and list entries, and MessageLog, one conversation's
// list of messages on screen. They decide nothing and keep no state beyond
// the DOM (the modules that own a room or a conversation call them), and
// they are the only code that knows the markup the style sheet and the
// browser tests rely on: class names, data-id, the ARIA roles. Everything
// people or the server wrote goes in with textContent (dom.js), never as
// markup.

import { el, localDateTime, localTime } from "./dom.js";

// -- message items ------------------------------------------------------------

/** A message: time, sender, text; ``id`` is its stored id, if it has one. */
export function messageItem({ id, username, body, timestamp, mine }) {
  const time = el("time", { className: "msg-time", text: localTime(timestamp) });
  if (timestamp) {
    time.dateTime = timestamp;
    time.title = localDateTime(timestamp);
  }
  const li = el("li", { className: mine ? "msg mine" : "msg" }, [
    time,
    el("span", { className: "msg-user", text: username }),
    el("span", { className: "msg-body", text: body }),
  ]);
  if (id !== undefined && id !== null) setStoredId(li, id);
  return li;
}

/** Our own message, shown at once and faded until the server confirms it. */
export function pendingItem(username, body) {
  const li = messageItem({ id: undefined, username, body, timestamp: null, mine: true });
  li.classList.add("pending");
  li.querySelector(".msg-time").textContent = "…";
  return li;
}

/** The server stored our message at ``timestamp``: show its time. */
export function markConfirmed(li, timestamp) {
  li.classList.remove("pending", "unconfirmed");
  const time = li.querySelector(".msg-time");
  time.textContent = localTime(timestamp);
  time.dateTime = timestamp;
  time.title = localDateTime(timestamp);
}

/** The connection dropped before the server confirmed the message. */
export function markUnconfirmed(li) {
  li.classList.add("unconfirmed");
}

/** The message was not sent (or we cannot know): say why next to it. */
export function markFailed(li, why) {
  li.classList.remove("pending", "unconfirmed");
  li.classList.add("failed");
  li.querySelector(".msg-time").textContent = "!";
  li.append(el("span", { className: "msg-error", text: why }));
}

/** Remember which stored message an item shows (for ordering and deletes). */
export function setStoredId(li, id) {
  li.dataset.id = String(id);
}

/** A line from the page rather than from a person (joins, the beginning). */
export function systemItem(text, timestamp) {
  const time = el("time", { className: "msg-time", text: localTime(timestamp) });
  if (timestamp) time.dateTime = timestamp;
  return el("li", { className: "system" }, [time, el("span", { className: "system-text", text })]);
}

// -- a conversation's messages ------------------------------------------------

/** How close to the bottom (px) a list counts as "reading the newest". */
const NEAR_END_PX = 80;

/** One conversation's messages on screen: an ARIA log that stays in the
 * DOM while another conversation is shown. Everything that puts items into
 * the list, takes them out or scrolls it goes through here. */
export class MessageLog {
  constructor(label) {
    this.element = el("ol", {
      className: "messages",
      attrs: { role: "log", "aria-live": "polite", "aria-label": label, tabindex: "0" },
    });
  }

  /** Whether the reader is at (or near) the newest message. */
  get atEnd() {
    const ol = this.element;
    return ol.scrollHeight - ol.scrollTop - ol.clientHeight < NEAR_END_PX;
  }

  /** The height of the content (to keep the reader's place, see keepPlace). */
  get height() {
    return this.element.scrollHeight;
  }

  scrollToEnd() {
    this.element.scrollTop = this.element.scrollHeight;
  }

  /** After something was put above what is shown (the log was ``heightBefore``
   * high), keep the same messages on screen. */
  keepPlace(heightBefore) {
    this.element.scrollTop += this.element.scrollHeight - heightBefore;
  }

  /** Add items at the end (the newest). */
  append(...items) {
    this.element.append(...items);
  }

  /** Add items above everything (an older page, oldest first). */
  prepend(...items) {
    this.element.prepend(...items);
  }

  /** Put an item with a stored id into its place (ids increase with time):
   * at the end if it is the newest, else after the last item with a smaller
   * id, else before the first. */
  insert(li, id) {
    const ol = this.element;
    const items = ol.querySelectorAll("li[data-id]");
    if (items.length === 0 || Number(items[items.length - 1].dataset.id) < id) {
      ol.append(li);
      return;
    }
    for (let i = items.length - 1; i >= 0; i -= 1) {
      if (Number(items[i].dataset.id) < id) {
        items[i].after(li);
        return;
      }
    }
    if (items.length > 0) items[0].before(li);
    else ol.append(li);
  }

  /** Take the item of stored message ``id`` (a number) off the list. */
  remove(id) {
    const li = this.element.querySelector(`li[data-id="${Number(id)}"]`);
    if (li) li.remove();
  }

  /** A copy of our own message with this text that was marked failed and
   * has no stored id, or null. */
  failedCopy(body) {
    for (const li of this.element.querySelectorAll("li.msg.mine.failed:not([data-id])")) {
      if (li.querySelector(".msg-body").textContent === body) return li;
    }
    return null;
  }

  clear() {
    this.element.replaceChildren();
  }
}

// -- the sidebar and the conversation header ----------------------------------

/** "# lobby" or "@ bob". */
export function conversationTitle(conv) {
  return conv.kind === "room" ? `# ${conv.name}` : `@ ${conv.name}`;
}

/** The line under the title. */
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

/** Fill a sidebar button: the name, the unread count, whether it is open. */
export function fillConversationButton(button, conv, isCurrent) {
  const children = [el("span", { className: "conv-name", text: conversationTitle(conv) })];
  if (conv.unread > 0) {
    children.push(
      el("span", { className: "badge", text: String(conv.unread), attrs: { "aria-label": `${conv.unread} unread` } }),
    );
  }
  button.replaceChildren(...children);
  if (isCurrent) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
}

/** Someone in the people list: a button that opens a DM, or yourself. */
export function personItem(name, isMe, onPick) {
  if (isMe) return el("li", { className: "me", text: `${name} (you)` });
  const button = el("button", {
    className: "person",
    text: name,
    attrs: { type: "button", title: `Send ${name} a direct message` },
  });
  button.addEventListener("click", () => onPick(name));
  return el("li", {}, [button]);
}

/** "bob is typing…", "bob, carol are typing…", or nothing. */
export function typingText(names) {
  if (names.length === 0) return "";
  return `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

/** An entry of the room directory: a button that joins the room. */
export function directoryItem(room, count, onJoin) {
  const button = el(
    "button",
    {
      className: "conv",
      attrs: { type: "button", "data-directory-room": room, "aria-label": `Join ${room}, ${count} online` },
    },
    [el("span", { className: "conv-name", text: `# ${room}` }), el("span", { className: "count", text: String(count) })],
  );
  button.addEventListener("click", () => onJoin(room));
  return el("li", {}, [button]);
}

export function directoryEmpty() {
  return el("li", { className: "hint", text: "Nobody is in any room yet." });
}
