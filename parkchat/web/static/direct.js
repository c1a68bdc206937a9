// Direct messages: conversations opened from the people list, the "Direct
// message to" form, an incoming message or the account's state (they follow
// the account: state.js); their stored history (the newest page when opened
// or reconnected, older pages as the reader scrolls up, the page around a
// search result) merged by id with live and offline messages. A DirectConversation holds
// what the page knows about one; DirectMessages owns them and handles the
// DM frames app.js routes here.

import { HISTORY_PAGE } from "./client.js";
import { MessageLog } from "./messagelog.js";

/** A search result is shown with about this many messages after it. */
const CONTEXT_AFTER = 20;

/** A conversation with one other person. */
export class DirectConversation {
  /**
   * @param {string} nickname
   * @param {object} hooks  onReachTop, onReachBottom, onBackToEnd, onAtEnd:
   *   each called with the conversation (see MessageLog)
   * @param {boolean} restored  listed again after a reload or from the
   *   account's state (not just opened)
   */
  constructor(nickname, hooks, restored) {
    this.kind = "dm";
    this.name = nickname;
    this.log = new MessageLog(`Direct messages with ${nickname}`, {
      onReachTop: () => hooks.onReachTop(this),
      onReachBottom: () => hooks.onReachBottom(this),
      onBackToEnd: () => hooks.onBackToEnd(this),
      onAtEnd: () => hooks.onAtEnd(this),
    });
    this.unread = 0;
    this.mentions = 0;
    /** The account's read marker here (the last seq read), if known. */
    this.readSeq = null;
    /** Opened here: the account is told once its history has come. */
    this.announce = false;
    this.restored = restored;
    /** The sidebar entry (conversations.js). */
    this.button = null;
    this.item = null;
  }

  /** Our own message was stored as ``id``: false if it is already shown. */
  confirmOwn(id) {
    return !this.log.has(id);
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
   * @param {import("./notify.js").Attention} options.attention
   * @param {(dm: DirectConversation) => void} [options.onAtEnd]  a
   *   conversation's log shows its newest messages (it may count as read)
   * @param {() => boolean} [options.keepsState]  whether the server keeps
   *   the account's conversations (then an opened one is announced)
   */
  constructor({ elements, client, session, conversations, view, attention, onAtEnd = () => {}, keepsState = () => false }) {
    this.onAtEnd = onAtEnd;
    this.keepsState = keepsState;
    this.client = client;
    this.attention = attention;
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
   * for) the first time; ``restored`` when it comes back after a reload. */
  add(nickname, { restored = false } = {}) {
    const key = nickname.toLowerCase();
    let dm = this.dms.get(key);
    if (dm) return dm;
    dm = new DirectConversation(
      nickname,
      {
        onReachTop: (d) => this.loadOlder(d),
        onReachBottom: (d) => this.loadNewer(d),
        onBackToEnd: (d) => this.backToEnd(d),
        onAtEnd: (d) => this.onAtEnd(d),
      },
      restored,
    );
    this.dms.set(key, dm);
    this.conversations.add(dm);
    this.save();
    this.loadHistory(dm);
    return dm;
  }

  /** Open the conversation with someone picked from the people list (the
   * account lists it on every device, even before a message). */
  show(nickname) {
    const known = this.dms.has(nickname.toLowerCase());
    const dm = this.add(nickname);
    // Announced once its history says the name is somebody's.
    if (!known) dm.announce = true;
    this.conversations.select(dm, true);
  }

  /** "Close conversation": off the list here and on the account's other
   * devices, until its next message. */
  close(dm) {
    this.client.send({ type: "close_direct", with: dm.name });
    this.remove(dm);
  }

  /** Take a conversation off the list (closed here or elsewhere). */
  remove(dm) {
    if (this.dms.get(dm.name.toLowerCase()) !== dm) return;
    this.dms.delete(dm.name.toLowerCase());
    this.save();
    this.conversations.remove(dm);
  }

  /** Open a conversation by a typed name (not with yourself). */
  open(nickname) {
    if (this.session.isMe(nickname)) {
      this.view.showAlert("That is you. Pick someone else to write to.", undefined, { passing: true });
      return;
    }
    this.show(nickname);
  }

  save() {
    this.session.saveDms([...this.dms.values()].map((dm) => dm.name));
  }

  /** "chat": a direct message as it is sent. */
  onChat(frame) {
    this.received(frame.from, frame.content, frame.timestamp, frame.id, frame.seq);
  }

  /** "offline_list": what was sent while we were away. */
  onOfflineList(frame) {
    for (const item of frame.data || []) this.received(item.from, item.content, item.created_at, item.msg_id);
  }

  received(from, content, timestamp, id, seq) {
    if (typeof from !== "string" || typeof content !== "string") return;
    const dm = this.add(from);
    if (typeof id === "number" && dm.log.has(id)) return;
    if (dm.log.detached) {
      // Showing a search result far back: newer pages bring it.
      dm.log.noteUnseen(1);
      this.conversations.noteNew(dm, [{ seq, mention: false }]);
      return;
    }
    const message = {
      id,
      seq: typeof seq === "number" ? seq : null,
      username: from,
      body: content,
      timestamp,
      mine: false,
      mention: false,
    };
    dm.log.add(message);
    this.conversations.noteNew(dm, [message]);
    this.attention.incoming(dm, message);
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

  /** The reader reached the oldest message in memory: the page before it,
   * if there is one (and none is on its way). */
  loadOlder(dm) {
    const before = dm.log.oldestId;
    if (before === null || !dm.log.hasOlder || dm.log.loadingOlder || this.dms.get(dm.name.toLowerCase()) !== dm) return;
    const frame = { type: "get_direct_history", with: dm.name, before, limit: HISTORY_PAGE };
    if (this.client.request(frame, { kind: "dm_history", dm, older: true }) !== null) dm.log.setLoadingOlder(true);
  }

  /** Open the conversation with ``nickname`` at a search result ({id,
   * seq}): from memory, else with the page around it, shown on its own
   * until newer pages or "Back to the newest messages" meet the newest. */
  showMessage(nickname, { id, seq }) {
    const dm = this.add(nickname, { restored: true });
    this.conversations.select(dm);
    if (dm.log.has(id)) {
      dm.log.reveal(id);
      return;
    }
    if (typeof seq !== "number") return;
    const frame = { type: "get_direct_history", with: dm.name, before_seq: seq + CONTEXT_AFTER + 1, limit: HISTORY_PAGE };
    this.client.request(frame, { kind: "dm_history", dm, around: id });
  }

  /** Detached, the reader reached the newest message in memory. */
  loadNewer(dm) {
    const newest = dm.log.findLast((e) => e.kind === "message" && typeof e.seq === "number");
    if (!dm.log.detached || dm.log.loadingNewer || !newest) return;
    const frame = { type: "get_direct_history", with: dm.name, after_seq: newest.seq, limit: HISTORY_PAGE };
    if (this.client.request(frame, { kind: "dm_history", dm, newer: true }) !== null) dm.log.setLoadingNewer(true);
  }

  /** "Back to the newest messages" while detached. */
  backToEnd(dm) {
    dm.log.restartAtEnd();
    this.loadHistory(dm);
  }

  /** "direct_history": a page of the stored conversation. */
  onHistory(frame, what) {
    if (!what || !what.dm || this.dms.get(what.dm.name.toLowerCase()) !== what.dm) return;
    const dm = what.dm;
    const messages = Array.isArray(frame.messages) ? frame.messages : [];
    if (what.around !== undefined || what.newer) {
      this.placed(dm, messages, what);
      return;
    }
    if (dm.announce) {
      dm.announce = false;
      if (this.keepsState()) this.client.send({ type: "open_direct", with: dm.name });
    }
    // A full page may have older ones behind it (the first answer decides
    // until scrolling back asks for more).
    if (what.older || dm.log.hasOlder === undefined) dm.log.hasOlder = messages.length >= HISTORY_PAGE;
    if (what.older) dm.log.setLoadingOlder(false);
    const fresh = [];
    for (const m of messages) {
      if (!m || typeof m.id !== "number" || typeof m.content !== "string" || dm.log.has(m.id)) continue;
      const mine = this.session.isMyUserId(m.from_user_id);
      // A message of ours marked failed that was stored after all.
      if (mine) {
        const failed = dm.log.findLast(
          (e) => e.kind === "message" && e.mine && e.state === "failed" && e.id === null && e.body === m.content,
        );
        if (failed) dm.log.remove(failed);
      }
      fresh.push({
        id: m.id,
        seq: typeof m.seq === "number" ? m.seq : null,
        username: String(m.from),
        body: m.content,
        timestamp: m.timestamp,
        mine,
        mention: false,
      });
    }
    if (what.older) dm.log.prependOlder(fresh);
    else if (!dm.log.detached) for (const message of fresh) dm.log.add(message);
    // A short page going back reached the first message.
    if (what.older && !dm.log.hasOlder) dm.log.reachedBeginning("This is the beginning of the conversation.");
    if (!what.older && this.conversations.isOpen(dm)) dm.log.jumpToEnd();
    this.conversations.metaChanged(dm);
  }

  /** A page around a search result, or a newer page while detached. */
  placed(dm, messages, what) {
    const fresh = messages
      .filter((m) => m && typeof m.id === "number" && typeof m.content === "string")
      .map((m) => ({
        id: m.id,
        seq: typeof m.seq === "number" ? m.seq : null,
        username: String(m.from),
        body: m.content,
        timestamp: m.timestamp,
        mine: this.session.isMyUserId(m.from_user_id),
        mention: false,
      }));
    if (what.newer) {
      dm.log.setLoadingNewer(false);
      if (!dm.log.detached) return;
      for (const entry of fresh) dm.log.add(entry);
      if (fresh.length < HISTORY_PAGE) dm.log.attach();
      return;
    }
    dm.log.showAround(fresh, what.around);
    if (fresh.length < HISTORY_PAGE) dm.log.reachedBeginning("This is the beginning of the conversation.");
    // Fewer after it than asked for: that was the newest.
    const at = fresh.findIndex((m) => m.id === what.around);
    if (at < 0 || fresh.length - at - 1 < CONTEXT_AFTER) dm.log.attach();
  }

  /** An "error" answered one of our requests; returns true if it was dealt
   * with here (nothing more to show). A conversation with a name that is
   * nobody's is taken off the list: said once when it was just opened,
   * quietly when it came back after a reload (so the error does not come
   * back on every reload). */
  requestFailed(what, frame) {
    if (!what || what.kind !== "dm_history" || !what.dm) return false;
    const dm = what.dm;
    if (what.older) dm.log.setLoadingOlder(false);
    if (what.newer) dm.log.setLoadingNewer(false);
    if (frame.code !== "unknown_recipient" || this.dms.get(dm.name.toLowerCase()) !== dm) return false;
    this.dms.delete(dm.name.toLowerCase());
    this.save();
    this.conversations.remove(dm);
    if (!dm.restored) this.view.showAlert(`There is no user named ${dm.name}.`, undefined, { passing: true });
    return true;
  }

  /** Logged out. */
  reset() {
    this.dms.clear();
  }
}
