// Rooms: joining (and re-joining from the room's last position after a
// reconnect: docs/websocket.md, "Resume after a reconnect"), history (older
// pages as the reader scrolls up), live messages merged by id, presence,
// who is online and typing, leaving, kicks, deletions, and the directory of
// active rooms. A Room holds what the page knows about one room; Rooms owns
// them all and handles the room frames app.js routes here.

import { HISTORY_PAGE } from "./client.js";
import { clear } from "./dom.js";
import { MessageLog } from "./messagelog.js";
import { directoryEmpty, directoryItem } from "./render.js";

const TYPING_SHOW_MS = 4000;
/** Joins and leaves ask who is online at most this often (ms). */
const WHO_EVERY_MS = 500;

/** One joined room. */
export class Room {
  /**
   * @param {string} name
   * @param {(room: Room) => void} onReachTop  the reader scrolled to the
   *   oldest message in memory
   */
  constructor(name, onReachTop) {
    this.kind = "room";
    this.name = name;
    this.log = new MessageLog(`Messages in ${name}`, { onReachTop: () => onReachTop(this) });
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
   */
  constructor({ elements, client, session, conversations, composer, view, attention }) {
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
  }

  focus() {
    this.ui.roomInput.focus();
  }

  /** List a room (restored after a reload, or about to be joined). */
  add(name) {
    let room = this.rooms.get(name);
    if (room) return room;
    room = new Room(name, (r) => this.loadOlder(r));
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
    this.client.request(frame, {
      kind: "join",
      room: room.name,
      resume,
      /** The room's position at the join (from "joined"). */
      seq: null,
      generation: this.client.generation,
    });
    this.conversations.metaChanged(room);
  }

  /** Connected (again): join every room, resuming from its position. */
  connectionReady() {
    for (const room of this.rooms.values()) this.sendJoin(room);
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
      room.log.jumpToEnd();
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

  /** Add stored messages (live, history or resume), skipping known ids;
   * live ones from others count as unread and may call for attention. */
  addMessages(room, messages, { older = false } = {}) {
    const fresh = [];
    const me = this.session.me;
    for (const m of messages) {
      if (!m || typeof m.id !== "number" || typeof m.body !== "string" || room.log.has(m.id)) continue;
      const mine = this.session.isMe(m.username);
      if (mine) this.composer.adoptResumed(room, m);
      fresh.push({
        id: m.id,
        seq: typeof m.seq === "number" ? m.seq : null,
        username: String(m.username),
        body: m.body,
        timestamp: m.timestamp,
        mine,
        mention: !mine && Boolean(me) && this.attention.mentions(m, me.nickname),
      });
    }
    if (older) room.log.prependOlder(fresh);
    else for (const message of fresh) room.log.add(message);
    if (!older && room.loaded) {
      const others = fresh.filter((m) => !m.mine);
      this.conversations.noteNew(room, others.length);
      for (const m of others) this.attention.incoming(room, m);
    }
    return fresh.length;
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

  /** A moderator removed a stored message: take it off the screen. */
  onDeleted(frame) {
    const room = this.rooms.get(frame.room);
    if (!room || typeof frame.id !== "number") return;
    room.log.removeId(frame.id);
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
