// Rooms: joining (and re-joining from the last seen id after a reconnect),
// history (older pages as the reader scrolls up), live messages merged by
// id, presence, who is online and typing, leaving, kicks, deletions, and the
// directory of active rooms. A Room holds what the page knows about one
// room; Rooms owns them all and handles the room frames app.js routes here.

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
    /** The newest id seen: a re-join resumes after it. */
    this.lastId = 0;
    /** The first history page arrived. */
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
    if (this.log.has(id)) return false;
    this.lastId = Math.max(this.lastId, id);
    return true;
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

  sendJoin(room) {
    room.joined = false;
    const frame = { type: "join", room: room.name };
    if (room.lastId > 0) frame.last_id = room.lastId;
    this.client.request(frame, {
      kind: "join",
      room: room.name,
      resume: room.lastId > 0,
      generation: this.client.generation,
    });
    this.conversations.metaChanged(room);
  }

  /** Connected (again): join every room, resuming after its last id. */
  connectionReady() {
    for (const room of this.rooms.values()) this.sendJoin(room);
  }

  requestWho(room) {
    this.client.request({ type: "who", room: room.name }, { kind: "who", room: room.name });
  }

  onJoined(frame, what) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    room.joined = true;
    room.total = frame.totalUsers ?? room.total;
    if (!room.loaded && !(what && what.resume)) {
      this.client.request({ type: "history", room: room.name, limit: HISTORY_PAGE }, { kind: "history", room: room.name });
    }
    this.requestWho(room);
    this.conversations.metaChanged(room);
  }

  onHistory(frame, what) {
    const room = this.rooms.get(frame.room);
    if (!room || !what) return;
    const messages = Array.isArray(frame.messages) ? frame.messages : [];
    if (what.kind === "join") {
      // Resume after a reconnect: everything after the last id we saw.
      if (frame.recovered === false) {
        // More than the server hands back were missed: start from its newest page.
        room.log.clear();
        room.log.hasOlder = true;
      }
      this.addMessages(room, messages);
      room.loaded = true;
      this.composer.failStale(room);
    } else if (what.kind === "history") {
      // The first page goes above whatever arrived live meanwhile.
      this.addMessages(room, messages, { older: true });
      room.loaded = true;
      room.log.hasOlder = room.log.hasOlder || messages.length >= HISTORY_PAGE;
      room.log.jumpToEnd();
    } else if (what.kind === "older") {
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
      // A guest is never me, even under my name (one who held it before
      // the account was registered): its messages keep their "guest" badge.
      const guest = m.guest === true;
      const mine = !guest && this.session.isMe(m.username);
      if (mine) this.composer.adoptResumed(room, m);
      fresh.push({
        id: m.id,
        username: String(m.username),
        guest,
        body: m.body,
        timestamp: m.timestamp,
        mine,
        mention: !mine && Boolean(me) && this.attention.mentions(m, me.nickname),
      });
      room.lastId = Math.max(room.lastId, m.id);
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
