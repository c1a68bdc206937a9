// Rooms: joining (and re-joining from the room's last position after a
// reconnect: docs/websocket.md, "Resume after a reconnect"), history (older
// pages as the reader scrolls up), live messages merged by id, presence,
// who is online and typing, leaving, kicks, edits and deletions, topics,
// opening a search result in its room, and the directory of active rooms. A
// Room holds what the page knows about one room; Rooms owns them all and
// handles the room frames app.js routes here.

import { HISTORY_PAGE } from "./client.js";
import { clear } from "./dom.js";
import { MessageLog } from "./messagelog.js";
import { mentionsOf } from "./notify.js";
import { directoryEmpty, directoryItem } from "./render.js";

const TYPING_SHOW_MS = 4000;
/** Joins and leaves ask who is online at most this often (ms). */
const WHO_EVERY_MS = 500;
/** A search result is shown with about this many messages after it. */
const CONTEXT_AFTER = 20;
/** Live messages kept while a room shows a search result far back. */
const DETACHED_KEEP = 2000;

/** One joined room. */
export class Room {
  /**
   * @param {string} name
   * @param {object} hooks  onReachTop, onReachBottom, onBackToEnd, onAtEnd:
   *   each called with the room (see MessageLog)
   */
  constructor(name, hooks) {
    this.kind = "room";
    this.name = name;
    this.log = new MessageLog(`Messages in ${name}`, {
      onReachTop: () => hooks.onReachTop(this),
      onReachBottom: () => hooks.onReachBottom(this),
      onBackToEnd: () => hooks.onBackToEnd(this),
      onAtEnd: () => hooks.onAtEnd(this),
    });
    /** The room's position (its seq) that this page has every message up
     * to: the seq of "joined", then of each message that arrived live or
     * in a resume (they come in seq order, each once). Null until joined.
     * A re-join resumes from it with "last_seq". Our own messages come
     * back as an "ack", not in this stream, so they do not move it: a
     * resume may bring them again, and they are merged by id. */
    this.lastSeq = null;
    /** What to say once a resume that could not give everything
     * (recovered: false) is in, and the notice saying it, until an older
     * page fills the gap. */
    this.gapText = null;
    this.gapNotice = null;
    /** The first history page arrived (or a resume completed). */
    this.loaded = false;
    /** Joined on the current connection. */
    this.joined = false;
    this.members = [];
    this.total = 0;
    this.unread = 0;
    this.mentions = 0;
    /** The account's read marker (the last seq read), when the server keeps one. */
    this.readSeq = null;
    /** The room's topic ("" for none). */
    this.topic = "";
    /** Live messages that came while the log showed a search result. */
    this.detachedLive = [];
    /** A search result to show once the room's first page is in. */
    this.pendingJump = null;
    /** Nickname -> the timer that stops showing them as typing. */
    this.typing = new Map();
    this.seenSelfJoin = false;
    /** A "who" request is due (presence changes are gathered). */
    this.whoTimer = null;
    /** The sidebar entry (conversations.js). */
    this.button = null;
    this.item = null;
  }

  /** Our own message was stored as ``id``: false if it is already shown. */
  confirmOwn(id) {
    return !this.log.has(id);
  }

  /** Every message of the room up to ``seq`` has reached the page. */
  advance(seq) {
    if (typeof seq === "number" && Number.isInteger(seq) && seq > (this.lastSeq ?? -1)) this.lastSeq = seq;
  }
}

export class Rooms {
  /**
   * @param {object} options
   * @param {object} options.elements  joinForm, roomInput, browse,
   *   directory, directoryTitle
   * @param {import("./client.js").ChatClient} options.client
   * @param {import("./session.js").Session} options.session
   * @param {import("./conversations.js").Conversations} options.conversations
   * @param {import("./composer.js").Composer} options.composer
   * @param {import("./view.js").PageView} options.view
   * @param {import("./notify.js").Attention} options.attention
   * @param {(room: Room) => void} [options.onAtEnd]  a room's log shows
   *   its newest messages (it may count as read)
   */
  constructor({ elements, client, session, conversations, composer, view, attention, onAtEnd = () => {} }) {
    this.onAtEnd = onAtEnd;
    this.ui = elements;
    this.attention = attention;
    this.client = client;
    this.session = session;
    this.conversations = conversations;
    this.composer = composer;
    this.view = view;
    /** Name -> Room, in the order they were joined. */
    this.rooms = new Map();
    elements.joinForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = elements.roomInput.value.trim();
      if (!name) {
        view.showAlert("Type the name of a room to join, for example lobby.", undefined, { passing: true });
        elements.roomInput.focus();
        return;
      }
      elements.roomInput.value = "";
      this.join(name);
    });
    elements.browse.addEventListener("click", () => this.browse());
    elements.topicButton.addEventListener("click", () => this.editTopic());
    elements.topicCancel.addEventListener("click", () => elements.topicDialog.close());
    elements.topicForm.addEventListener("submit", (event) => {
      event.preventDefault();
      elements.topicDialog.close();
      this.sendTopic(elements.topicInput.value.trim());
    });
  }

  focus() {
    this.ui.roomInput.focus();
  }

  /** List a room (restored after a reload, or about to be joined). */
  add(name) {
    let room = this.rooms.get(name);
    if (room) return room;
    room = new Room(name, {
      onReachTop: (r) => this.loadOlder(r),
      onReachBottom: (r) => this.loadNewer(r),
      onBackToEnd: (r) => this.backToEnd(r),
      onAtEnd: (r) => this.onAtEnd(r),
    });
    this.rooms.set(name, room);
    this.conversations.add(room);
    return room;
  }

  /** Join a room and open it (or just open it if it is joined already). */
  join(name) {
    const existing = this.rooms.get(name);
    if (existing) {
      this.conversations.select(existing, true);
      return;
    }
    const room = this.add(name);
    this.save();
    this.conversations.select(room, true);
    this.sendJoin(room);
  }

  save() {
    this.session.saveRooms([...this.rooms.keys()]);
  }

  /** Join (again). A room whose messages this page has resumes from its
   * position; one it has not loaded yet (listed after a reload, or its
   * first page never came) starts afresh from the newest page. */
  sendJoin(room) {
    room.joined = false;
    const frame = { type: "join", room: room.name };
    const resume = room.loaded && room.lastSeq !== null;
    if (resume) frame.last_seq = room.lastSeq;
    else room.lastSeq = null;
    const id = this.client.request(frame, {
      kind: "join",
      room: room.name,
      resume,
      /** The room's position at the join (from "joined"). */
      seq: null,
      generation: this.client.generation,
    });
    /** The connection (generation) this room was last joined on. */
    if (id !== null) room.joinedOn = this.client.generation;
    this.conversations.metaChanged(room);
  }

  /** Connected (again): join every room, resuming from its position. */
  connectionReady() {
    for (const room of this.rooms.values()) if (room.joinedOn !== this.client.generation) this.sendJoin(room);
  }

  /** The connection dropped: no room is joined until it is back (so
   * nothing asks about one meanwhile). */
  connectionLost() {
    for (const room of this.rooms.values()) {
      room.joined = false;
      clearTimeout(room.whoTimer);
      room.whoTimer = null;
      this.conversations.metaChanged(room);
    }
  }

  requestWho(room) {
    this.client.request({ type: "who", room: room.name }, { kind: "who", room: room.name });
  }

  /** "joined": the room's position at the join (``seq``) and, when
   * resuming, how many missed messages follow in "history" frames
   * (``resume.count``) and whether that is all of them. */
  onJoined(frame, what) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    room.joined = true;
    room.total = frame.totalUsers ?? room.total;
    if (typeof frame.topic === "string") this.setTopic(room, frame.topic);
    const seq = typeof frame.seq === "number" ? frame.seq : null;
    const resume = frame.resume && typeof frame.resume === "object" ? frame.resume : null;
    const resuming = Boolean(what && what.kind === "join" && what.resume);
    if (what && what.kind === "join") what.seq = seq;
    if (resuming && resume && resume.recovered === false) this.missed(room, resume);
    if (!resume || !(Number(resume.count) > 0)) {
      // Nothing follows: the page has the room up to its position (a room
      // never written to is position 0, and a resume starts there).
      room.advance(seq);
      if (resuming) this.resumed(room);
    }
    if (!room.loaded && !resuming) {
      this.client.request({ type: "history", room: room.name, limit: HISTORY_PAGE }, { kind: "history", room: room.name });
    }
    this.requestWho(room);
    this.conversations.metaChanged(room);
  }

  /** A resume is complete: what we sent before the reconnect and did not
   * find in it was not stored. */
  resumed(room) {
    room.loaded = true;
    this.composer.failStale(room);
    if (room.gapText) {
      room.gapNotice = room.log.appendNotice(room.gapText);
      room.gapText = null;
    }
  }

  /** More messages were missed than the server resumes (recovered: false):
   * the room starts again from the newest ones it sends, and a line after
   * them (where the reader is) says how many older ones are not shown;
   * scrolling up loads them as history. */
  missed(room, resume) {
    const first = Number(resume.first_seq);
    const count = Number.isInteger(first) && room.lastSeq !== null ? first - room.lastSeq - 1 : 0;
    room.gapText =
      count > 0
        ? `${count.toLocaleString()} older message${count === 1 ? " is" : "s are"} not shown; scroll up for history.`
        : "Older messages are not shown; scroll up for history.";
    if (room.gapNotice) room.log.remove(room.gapNotice);
    room.gapNotice = null;
    room.log.restart();
    room.log.hasOlder = true;
  }

  /** "history": a page of stored messages, the answer to a resuming join
   * (one of several, oldest first) or to a history request (gathered until
   * its last frame, then put above what is shown). */
  onHistory(frame, what) {
    const room = this.rooms.get(frame.room);
    if (!room || !what) return;
    let messages = Array.isArray(frame.messages) ? frame.messages : [];
    if (what.kind === "join") {
      // Resume after a reconnect: the messages after our position, in
      // order, in as many frames as they need.
      this.addMessages(room, messages);
      for (const m of messages) if (m) room.advance(m.seq);
      if (frame.last !== false) {
        room.advance(what.seq);
        this.resumed(room);
      }
      this.conversations.metaChanged(room);
      return;
    }
    what.gathered = (what.gathered || []).concat(messages);
    if (frame.last === false) return;
    messages = what.gathered;
    if (what.kind === "history") {
      // The first page goes above whatever arrived live meanwhile.
      this.addMessages(room, messages, { older: true });
      room.loaded = true;
      room.log.hasOlder = room.log.hasOlder || messages.length >= HISTORY_PAGE;
      if (room.pendingJump) {
        const jump = room.pendingJump;
        room.pendingJump = null;
        this.jumpTo(room, jump.id, jump.seq);
      } else {
        room.log.jumpToEnd();
      }
    } else if (what.kind === "around") {
      this.showAround(room, messages, what);
    } else if (what.kind === "newer") {
      this.addNewer(room, messages);
    } else if (what.kind === "older") {
      if (room.gapNotice && messages.length > 0) {
        // The gap a resume left is being filled from above.
        room.log.remove(room.gapNotice);
        room.gapNotice = null;
      }
      this.addMessages(room, messages, { older: true });
      room.log.setLoadingOlder(false);
      if (messages.length < HISTORY_PAGE) room.log.reachedBeginning("This is the beginning of the room.");
    }
    this.conversations.metaChanged(room);
  }

  /** The reader reached the oldest message in memory: the page before it,
   * if there is one (and none is on its way). */
  loadOlder(room) {
    const before = room.log.oldestId;
    if (before === null || !room.log.hasOlder || room.log.loadingOlder || !this.rooms.has(room.name)) return;
    const id = this.client.request(
      { type: "history", room: room.name, before, limit: HISTORY_PAGE },
      { kind: "older", room: room.name },
    );
    if (id !== null) room.log.setLoadingOlder(true);
  }

  /** A stored message as an entry of the log. */
  entryOf(m) {
    const me = this.session.me;
    const guest = m.guest === true;
    const mine = !guest && this.session.isMe(m.username);
    const seq = typeof m.seq === "number" ? m.seq : null;
    const mentions = Array.isArray(m.mentions) ? m.mentions.filter((n) => typeof n === "string") : undefined;
    return {
      id: m.id,
      seq,
      username: String(m.username),
      guest,
      body: m.body,
      timestamp: m.timestamp,
      edited_at: typeof m.edited_at === "string" ? m.edited_at : null,
      mentions,
      atMe: me && mentions ? mentionsOf(m, me.nickname) : undefined,
      mine,
      editable: mine && seq !== null,
      mention: !mine && Boolean(me) && this.attention.mentions(m, me.nickname),
    };
  }

  /** Add stored messages (live, history or resume), skipping known ids;
   * live ones from others count as unread and may call for attention.
   * While the log shows a search result far back, live ones are kept
   * aside until it meets the newest again. */
  addMessages(room, messages, { older = false } = {}) {
    const fresh = [];
    for (const m of messages) {
      if (!m || typeof m.id !== "number" || typeof m.body !== "string" || room.log.has(m.id)) continue;
      // A guest is never me, even under my name (one who held it before
      // the account was registered): its messages keep their "guest" badge.
      if (m.guest !== true && this.session.isMe(m.username)) this.composer.adoptResumed(room, m);
      fresh.push(this.entryOf(m));
    }
    if (older) room.log.prependOlder(fresh);
    else if (room.log.detached) this.keepAside(room, fresh);
    else for (const message of fresh) room.log.add(message);
    if (!older && room.loaded) {
      const others = fresh.filter((m) => !m.mine);
      this.conversations.noteNew(room, others);
      for (const m of others) this.attention.incoming(room, m);
    }
    return fresh.length;
  }

  keepAside(room, entries) {
    room.detachedLive.push(...entries);
    if (room.detachedLive.length > DETACHED_KEEP) room.detachedLive.splice(0, room.detachedLive.length - DETACHED_KEEP);
    room.log.noteUnseen(entries.filter((m) => !m.mine).length);
  }

  // -- search results: a message in its context ---------------------------------

  /** Open room ``name`` at the message of a search result ({id, seq}). */
  showMessage(name, { id, seq }) {
    let room = this.rooms.get(name);
    if (!room) {
      // Found in a room this page does not list (any more): join it.
      this.join(name);
      room = this.rooms.get(name);
      if (room) room.pendingJump = { id, seq };
      return;
    }
    this.conversations.select(room);
    if (!room.loaded) room.pendingJump = { id, seq };
    else this.jumpTo(room, id, seq);
  }

  /** Show message ``id`` (at ``seq``): from memory, else with a page of
   * the history around it. */
  jumpTo(room, id, seq) {
    if (room.log.has(id)) {
      room.log.reveal(id);
      return;
    }
    if (typeof seq !== "number") return;
    this.client.request(
      { type: "history", room: room.name, before_seq: seq + CONTEXT_AFTER + 1, limit: HISTORY_PAGE },
      { kind: "around", room: room.name, id },
    );
  }

  /** The page around a search result: joined to what is in memory if it
   * reaches it, else shown on its own (detached) until newer pages or
   * "Back to the newest messages" meet the live end again. */
  showAround(room, messages, what) {
    const fresh = messages.filter((m) => m && typeof m.id === "number" && typeof m.body === "string").map((m) => this.entryOf(m));
    const oldest = room.log.oldestId;
    const newestHere = fresh.length > 0 ? fresh[fresh.length - 1].id : null;
    if (!room.log.detached && oldest !== null && newestHere !== null && newestHere >= oldest) {
      room.log.prependOlder(fresh.filter((m) => m.id < oldest));
    } else {
      room.detachedLive = [];
      room.log.showAround(fresh, what.id);
      if (fresh.length < HISTORY_PAGE) room.log.reachedBeginning("This is the beginning of the room.");
      if (newestHere === null || (room.lastSeq !== null && fresh[fresh.length - 1].seq >= room.lastSeq)) this.attach(room);
    }
    room.log.reveal(what.id);
  }

  /** Detached, the reader reached the newest message in memory: the page
   * after it. */
  loadNewer(room) {
    const newest = room.log.findLast((e) => e.kind === "message" && typeof e.seq === "number");
    if (!room.log.detached || room.log.loadingNewer || !newest) return;
    const frame = { type: "history", room: room.name, after_seq: newest.seq, limit: HISTORY_PAGE };
    if (this.client.request(frame, { kind: "newer", room: room.name }) !== null) room.log.setLoadingNewer(true);
  }

  addNewer(room, messages) {
    room.log.setLoadingNewer(false);
    if (!room.log.detached) return;
    const fresh = messages.filter((m) => m && typeof m.id === "number" && typeof m.body === "string").map((m) => this.entryOf(m));
    for (const entry of fresh) room.log.add(entry);
    const newest = fresh.length > 0 ? fresh[fresh.length - 1].seq : null;
    if (fresh.length < HISTORY_PAGE || (room.lastSeq !== null && newest !== null && newest >= room.lastSeq)) this.attach(room);
  }

  /** The detached log met the newest messages: what came live meanwhile
   * joins it, and it follows the end again. */
  attach(room) {
    for (const entry of room.detachedLive) room.log.add(entry);
    room.detachedLive = [];
    room.log.attach();
  }

  /** "Back to the newest messages" while detached: start again from the
   * newest page. */
  backToEnd(room) {
    room.detachedLive = [];
    room.log.restartAtEnd();
    this.client.request({ type: "history", room: room.name, limit: HISTORY_PAGE }, { kind: "history", room: room.name });
  }

  // -- edits, topics ------------------------------------------------------------

  /** "edited": a message's new text (the newest edit wins). */
  onEdited(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || typeof frame.id !== "number" || typeof frame.body !== "string") return;
    const entry = room.log.byId.get(frame.id) || room.detachedLive.find((e) => e.id === frame.id);
    if (!entry) return;
    const at = typeof frame.edited_at === "string" ? frame.edited_at : "";
    if (entry.edited_at && at && at < entry.edited_at) return;
    const fields = { body: frame.body, edited_at: at || entry.edited_at || new Date().toISOString() };
    if (entry.state === "pending" && entry.body === frame.body) fields.state = null;
    if (Array.isArray(frame.mentions)) {
      fields.mentions = frame.mentions;
      const me = this.session.me;
      if (me) fields.atMe = mentionsOf(frame, me.nickname);
    }
    room.log.update(entry, fields);
  }

  /** "topic": someone set the topic (or the answer to asking for it). */
  onTopic(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || typeof frame.topic !== "string") return;
    this.setTopic(room, frame.topic);
  }

  setTopic(room, topic) {
    if (room.topic === topic) return;
    room.topic = topic;
    this.conversations.topicChanged(room);
  }

  /** "Topic": the dialog, with the open room's topic to change. */
  editTopic() {
    const room = this.conversations.current;
    if (!room || room.kind !== "room") return;
    this.ui.topicInput.value = room.topic;
    this.ui.topicDialog.showModal();
    this.ui.topicInput.select();
  }

  sendTopic(topic) {
    const room = this.conversations.current;
    if (!room || room.kind !== "room") return;
    if (this.client.request({ type: "topic", room: room.name, topic }, { kind: "topic", room: room.name }) === null) {
      this.view.showAlert("Not connected right now: the topic was not changed.", undefined, { passing: true });
    }
  }

  onWho(frame) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    room.members = Array.isArray(frame.users) ? frame.users.filter((u) => typeof u === "string") : [];
    room.total = frame.totalUsers ?? room.members.length;
    this.conversations.peopleChanged(room);
  }

  onMessage(frame) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    if (room.typing.has(frame.username)) {
      clearTimeout(room.typing.get(frame.username));
      room.typing.delete(frame.username);
      this.conversations.typingChanged(room);
    }
    if (typeof frame.totalUsers === "number") room.total = frame.totalUsers;
    this.addMessages(room, [frame]);
    room.advance(frame.seq);
  }

  /** "join" and "userleave": someone came or went. A run of these is one
   * line ("alice, bob and 3 others joined"); who is online is asked once
   * for the run. */
  onPresence(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || typeof frame.username !== "string") return;
    const self = this.session.isMe(frame.username);
    if (typeof frame.totalUsers === "number") room.total = frame.totalUsers;
    if (!self) {
      room.log.addPresence(frame.username, frame.type === "join" ? "join" : "leave", frame.timestamp);
    } else if (frame.type === "join" && !room.seenSelfJoin) {
      // Our own join is shown once; re-joins after a reconnect are not news.
      room.log.appendNotice(`You joined ${room.name}`, frame.timestamp);
    }
    if (self && frame.type === "join") room.seenSelfJoin = true;
    if (room.joined && room.whoTimer === null) {
      room.whoTimer = setTimeout(() => {
        room.whoTimer = null;
        if (room.joined && this.rooms.get(room.name) === room) this.requestWho(room);
      }, WHO_EVERY_MS);
    }
    this.conversations.metaChanged(room);
  }

  onTyping(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || this.session.isMe(frame.username)) return;
    const old = room.typing.get(frame.username);
    if (old) clearTimeout(old);
    room.typing.set(
      frame.username,
      setTimeout(() => {
        room.typing.delete(frame.username);
        this.conversations.typingChanged(room);
      }, TYPING_SHOW_MS),
    );
    this.conversations.typingChanged(room);
  }

  /** Its author or a moderator removed a stored message: take it off the
   * screen. */
  onDeleted(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || typeof frame.id !== "number") return;
    room.log.removeId(frame.id);
    room.detachedLive = room.detachedLive.filter((e) => e.id !== frame.id);
  }

  onKicked(frame) {
    const room = this.rooms.get(frame.room);
    const reason = typeof frame.reason === "string" && frame.reason ? `: ${frame.reason}` : "";
    this.view.showAlert(`A moderator removed you from ${frame.room}${reason}`, undefined, { passing: true });
    if (room) this.remove(room);
  }

  leave(room) {
    this.client.request({ type: "leave", room: room.name }, { kind: "leave", room: room.name });
    this.remove(room);
  }

  remove(room) {
    clearTimeout(room.whoTimer);
    for (const timer of room.typing.values()) clearTimeout(timer);
    this.rooms.delete(room.name);
    this.save();
    this.conversations.remove(room);
  }

  /** "Browse active rooms". */
  browse() {
    if (!this.client.request({ type: "list_rooms" }, { kind: "directory" })) {
      this.view.showAlert("Not connected right now.", undefined, { passing: true });
    }
  }

  /** The room directory: a button per active room (joining it on click). */
  onRoomList(frame) {
    const { directory, directoryTitle } = this.ui;
    clear(directory);
    const rooms = Array.isArray(frame.rooms) ? frame.rooms : [];
    for (const entry of rooms) {
      if (!entry || typeof entry.room !== "string") continue;
      directory.append(directoryItem(entry.room, Number(entry.totalUsers) || 0, (name) => this.join(name)));
    }
    if (rooms.length === 0) directory.append(directoryEmpty());
    directory.hidden = directoryTitle.hidden = false;
  }

  /** An "error" answered one of our requests. */
  requestFailed(what) {
    if (!what) return;
    if (what.kind === "join") {
      // A room we could not join (a bad name, say) is not listed.
      const room = this.rooms.get(what.room);
      if (room && !room.loaded) this.remove(room);
    } else if (what.kind === "older") {
      const room = this.rooms.get(what.room);
      if (room) room.log.setLoadingOlder(false);
    } else if (what.kind === "newer") {
      const room = this.rooms.get(what.room);
      if (room) room.log.setLoadingNewer(false);
    }
  }

  /** Logged out. */
  reset() {
    for (const room of this.rooms.values()) {
      clearTimeout(room.whoTimer);
      for (const timer of room.typing.values()) clearTimeout(timer);
    }
    this.rooms.clear();
    clear(this.ui.directory);
    this.ui.directory.hidden = this.ui.directoryTitle.hidden = true;
  }
}
