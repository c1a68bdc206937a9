// Direct messages: conversations opened from the people list, the "Direct
// message to" form or an incoming message; their stored history (the newest
// page when opened or reconnected, older pages on demand) merged by id with
// live and offline messages. A DirectConversation holds what the page knows
// about one; DirectMessages owns them and handles the DM frames app.js
// routes here.

import { HISTORY_PAGE } from "./client.js";
import { MessageLog, messageItem, systemItem } from "./render.js";

/** A conversation with one other person. */
export class DirectConversation {
  constructor(nickname) {
    this.kind = "dm";
    this.name = nickname;
    this.log = new MessageLog(`Direct messages with ${nickname}`);
    /** Stored ids shown (each message once, whichever way it came). */
    this.ids = new Set();
    this.unread = 0;
    /** Unknown until the first history page answers. */
    this.hasOlder = undefined;
    /** The sidebar entry (conversations.js). */
    this.button = null;
    this.item = null;
  }

  /** Our own message was stored as ``id``: false if it is already shown. */
  confirmOwn(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    return true;
  }
}

export class DirectMessages {
  /**
   * @param {object} options
   * @param {{form: HTMLFormElement, input: HTMLInputElement}} options.elements
   * @param {import("./client.js").ChatClient} options.client
   * @param {import("./session.js").Session} options.session
   * @param {import("./conversations.js").Conversations} options.conversations
   * @param {import("./view.js").PageView} options.view
   */
  constructor({ elements, client, session, conversations, view }) {
    this.client = client;
    this.session = session;
    this.conversations = conversations;
    this.view = view;
    /** Lower-cased nickname -> DirectConversation (nicknames ignore case). */
    this.dms = new Map();
    elements.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = elements.input.value.trim();
      if (!name) {
        elements.input.focus();
        return;
      }
      elements.input.value = "";
      this.open(name);
    });
  }

  /** The conversation with ``nickname``, listed (and its history asked
   * for) the first time. */
  add(nickname) {
    const key = nickname.toLowerCase();
    let dm = this.dms.get(key);
    if (dm) return dm;
    dm = new DirectConversation(nickname);
    this.dms.set(key, dm);
    this.conversations.add(dm);
    this.save();
    this.loadHistory(dm);
    return dm;
  }

  /** Open the conversation with someone picked from the people list. */
  show(nickname) {
    this.conversations.select(this.add(nickname), true);
  }

  /** Open a conversation by a typed name (not with yourself). */
  open(nickname) {
    if (this.session.isMe(nickname)) {
      this.view.showAlert("That is you. Pick someone else to write to.");
      return;
    }
    this.show(nickname);
  }

  save() {
    this.session.saveDms([...this.dms.values()].map((dm) => dm.name));
  }

  /** "chat": a direct message as it is sent. */
  onChat(frame) {
    this.received(frame.from, frame.content, frame.timestamp, frame.id);
  }

  /** "offline_list": what was sent while we were away. */
  onOfflineList(frame) {
    for (const item of frame.data || []) this.received(item.from, item.content, item.created_at, item.msg_id);
  }

  received(from, content, timestamp, id) {
    if (typeof from !== "string" || typeof content !== "string") return;
    const dm = this.add(from);
    if (typeof id === "number") {
      if (dm.ids.has(id)) return;
      dm.ids.add(id);
    }
    const stick = dm.log.atEnd;
    const li = messageItem({ id, username: from, body: content, timestamp, mine: false });
    if (typeof id === "number") dm.log.insert(li, id);
    else dm.log.append(li);
    this.conversations.noteNew(dm, stick);
  }

  /** Connected (again): what arrived while we were away, and the newest
   * page of every open conversation. */
  connectionReady() {
    this.client.request({ type: "get_offline" }, { kind: "offline" });
    for (const dm of this.dms.values()) this.loadHistory(dm);
  }

  /** Ask for the stored conversation (its newest page). */
  loadHistory(dm) {
    if (!this.client.ready) return; // connectionReady asks again
    this.client.request({ type: "get_direct_history", with: dm.name, limit: HISTORY_PAGE }, { kind: "dm_history", dm });
  }

  /** "Load older messages": the page before the oldest message shown. */
  loadOlder(dm) {
    const ids = [...dm.ids];
    if (ids.length === 0) return;
    const frame = { type: "get_direct_history", with: dm.name, before: Math.min(...ids), limit: HISTORY_PAGE };
    if (this.client.request(frame, { kind: "dm_history", dm, older: true }) !== null) {
      this.conversations.setLoadingOlder(true);
    } else {
      this.view.showAlert("Not connected: older messages can be loaded once the connection is back.");
    }
  }

  /** "direct_history": a page of the stored conversation. */
  onHistory(frame, what) {
    if (!what || !what.dm || this.dms.get(what.dm.name.toLowerCase()) !== what.dm) return;
    const dm = what.dm;
    const stick = dm.log.atEnd && !what.older;
    const messages = Array.isArray(frame.messages) ? frame.messages : [];
    // A full page may have older ones behind it (the first answer decides
    // until "Load older" asks for more).
    if (what.older || dm.hasOlder === undefined) dm.hasOlder = messages.length >= HISTORY_PAGE;
    if (what.older) this.conversations.setLoadingOlder(false);
    for (const m of messages) {
      if (typeof m.id !== "number" || typeof m.content !== "string" || dm.ids.has(m.id)) continue;
      dm.ids.add(m.id);
      const mine = this.session.isMyUserId(m.from_user_id);
      // A message of ours marked failed that was stored after all.
      if (mine) dm.log.failedCopy(m.content)?.remove();
      dm.log.insert(messageItem({ id: m.id, username: m.from, body: m.content, timestamp: m.timestamp, mine }), m.id);
    }
    // A short page going back reached the first message.
    if (what.older && !dm.hasOlder) dm.log.prepend(systemItem("This is the beginning of the conversation.", null));
    if (stick || (this.conversations.isOpen(dm) && !what.older)) dm.log.scrollToEnd();
    this.conversations.metaChanged(dm);
  }

  /** An "error" answered one of our requests. */
  requestFailed(what) {
    if (what && what.kind === "dm_history" && what.older) this.conversations.setLoadingOlder(false);
  }

  /** Logged out. */
  reset() {
    this.dms.clear();
  }
}
