// What follows the account from device to device (docs/websocket.md,
// "Account state"): the rooms it has joined, its direct conversations, and
// per conversation a read marker with unread and mention counts. The
// server sends all of it as "state" right after "ready", and pushes every
// change made on any device ("room_state", "direct_state"); this module
// makes the page follow: it lists and joins the rooms, drops the ones left
// elsewhere, takes the server's counts, counts what arrives in between,
// and tells the server what was read: a conversation counts as read up to
// its newest message while it is open, scrolled to the end, in a visible
// tab.

/** A read marker is sent at most this often per conversation (ms). */
const READ_EVERY_MS = 500;
/** Without account state (an older server), rooms are joined after this
 * long anyway (ms). */
const STATE_WAIT_MS = 2000;

/** The newest stored seq among a conversation's entries in memory. */
function newestSeq(conv) {
  const entry = conv.log.findLast((e) => e.kind === "message" && typeof e.seq === "number");
  return entry ? entry.seq : null;
}

/** Others' messages in memory after ``seq``: {unread, mentions}. */
function countAfter(conv, seq) {
  let unread = 0;
  let mentions = 0;
  for (let i = conv.log.entries.length - 1; i >= 0; i -= 1) {
    const e = conv.log.entries[i];
    if (e.kind !== "message" || typeof e.seq !== "number") continue;
    if (e.seq <= seq) break;
    if (e.mine) continue;
    unread += 1;
    if (e.mention) mentions += 1;
  }
  return { unread, mentions };
}

export class AccountState {
  /**
   * @param {object} options
   * @param {import("./client.js").ChatClient} options.client
   * @param {import("./rooms.js").Rooms} options.rooms
   * @param {import("./direct.js").DirectMessages} options.direct
   * @param {import("./conversations.js").Conversations} options.conversations
   * @param {import("./preferences.js").Preferences} options.prefs
   * @param {import("./notify.js").Attention} options.attention
   * @param {() => void} options.onSettled  the account's rooms are known
   *   (its first state since login arrived, or an older server sent none):
   *   the page can pick what to open
   * @param {Document} [options.doc]
   */
  constructor({ client, rooms, direct, conversations, prefs, attention, onSettled, doc = document }) {
    this.client = client;
    this.rooms = rooms;
    this.direct = direct;
    this.conversations = conversations;
    this.prefs = prefs;
    this.attention = attention;
    this.onSettled = onSettled;
    this.doc = doc;
    /** The server keeps account state (a "state" frame came). */
    this.supported = false;
    /** A state frame arrived since login. */
    this.seen = false;
    /** Waiting for "state" after "ready" (else join anyway). */
    this.waitTimer = null;
    /** Conversation -> the timer of its next read marker. */
    this.readTimers = new Map();
    doc.addEventListener("visibilitychange", () => {
      if (doc.visibilityState === "visible" && this.conversations.current) this.maybeRead(this.conversations.current);
    });
  }

  /** Connected (again): the rooms are joined once the state says which
   * (or after a while, from an older server that sends none). */
  connectionReady() {
    clearTimeout(this.waitTimer);
    this.waitTimer = setTimeout(() => {
      this.waitTimer = null;
      this.rooms.connectionReady();
      this.settle();
    }, this.supported ? STATE_WAIT_MS * 5 : STATE_WAIT_MS);
  }

  /** "state": everything the account has, after every "ready". */
  onState(frame) {
    this.supported = true;
    this.attention.serverMentions = true;
    const rooms = Array.isArray(frame.rooms) ? frame.rooms.filter((r) => r && typeof r.room === "string") : [];
    const names = new Set(rooms.map((r) => r.room));
    // Rooms left on another device while this one was away (not one
    // joined here on this connection before the state came).
    for (const room of [...this.rooms.rooms.values()]) {
      if (!names.has(room.name) && room.joinedOn !== this.client.generation) this.rooms.remove(room);
    }
    for (const r of rooms) this.applyRoom(this.rooms.add(r.room), r);
    // (A room joined here meanwhile is in the account now: its joined
    // answer came or comes on this connection.)
    this.rooms.save();
    const directs = Array.isArray(frame.directs) ? frame.directs : [];
    for (const d of directs) {
      if (!d || typeof d.with !== "string") continue;
      this.applyDirect(this.direct.add(d.with, { restored: true }), d);
    }
    if (this.waitTimer !== null) {
      clearTimeout(this.waitTimer);
      this.waitTimer = null;
      this.rooms.connectionReady();
    }
    this.settle();
  }

  settle() {
    if (this.seen) return;
    this.seen = true;
    this.onSettled();
  }

  /** "room_state": the account joined, left, read or muted a room (here or
   * on another device). */
  onRoomState(frame) {
    if (typeof frame.room !== "string") return;
    let room = this.rooms.rooms.get(frame.room);
    if (frame.joined === false) {
      if (room) this.rooms.remove(room);
      return;
    }
    if (!room) {
      room = this.rooms.add(frame.room);
      this.rooms.save();
      if (this.client.ready) this.rooms.sendJoin(room);
    }
    this.applyRoom(room, frame);
  }

  /** "direct_state": a conversation was read, opened or closed. */
  onDirectState(frame) {
    if (typeof frame.with !== "string") return;
    const dm = this.direct.dms.get(frame.with.toLowerCase());
    if (frame.open === false) {
      if (dm) this.direct.remove(dm);
      return;
    }
    this.applyDirect(dm || this.direct.add(frame.with, { restored: true }), frame);
  }

  /** The server's counts for a room (exact up to its ``seq``), plus what
   * arrived here after that. */
  applyRoom(room, r) {
    if (typeof r.read_seq === "number") room.readSeq = Math.max(room.readSeq ?? 0, r.read_seq);
    if (typeof r.seq === "number") this.applyCounts(room, r.seq, r.unread, r.mentions);
    if (typeof r.muted === "boolean" && this.prefs.isMuted(room.name) !== r.muted) {
      this.prefs.setMuted(room.name, r.muted);
      this.conversations.muteChanged(room);
    }
    if (typeof r.topic === "string" || r.topic === null) this.rooms.setTopic(room, r.topic || "");
    this.conversations.countsChanged(room);
    this.maybeRead(room);
  }

  applyDirect(dm, d) {
    if (typeof d.read_seq === "number") dm.readSeq = Math.max(dm.readSeq ?? 0, d.read_seq);
    if (typeof d.seq === "number") this.applyCounts(dm, d.seq, d.unread, 0);
    this.conversations.countsChanged(dm);
    this.maybeRead(dm);
  }

  applyCounts(conv, seq, unread, mentions) {
    const after = countAfter(conv, seq);
    conv.unread = (Number(unread) || 0) + after.unread;
    conv.mentions = (Number(mentions) || 0) + after.mentions;
    const newest = newestSeq(conv);
    conv.countedSeq = Math.max(seq, newest ?? 0);
  }

  /** Tell the server that ``conv`` is read up to its newest message, if it
   * is open, scrolled to the end, in a visible tab (and that is news). */
  maybeRead(conv) {
    if (!this.supported || this.conversations.current !== conv) return;
    if (this.doc.visibilityState === "hidden" || !conv.log.atEnd) return;
    const seq = conv.kind === "room" ? conv.lastSeq : newestSeq(conv);
    if (typeof seq !== "number" || seq <= (conv.readSeq ?? -1)) {
      if (conv.unread || conv.mentions) {
        conv.unread = conv.mentions = 0;
        this.conversations.countsChanged(conv);
      }
      return;
    }
    conv.unread = conv.mentions = 0;
    this.conversations.countsChanged(conv);
    if (this.readTimers.has(conv)) return;
    this.readTimers.set(
      conv,
      setTimeout(() => {
        this.readTimers.delete(conv);
        this.sendRead(conv);
      }, READ_EVERY_MS),
    );
  }

  sendRead(conv) {
    if (this.conversations.current !== conv || !this.client.ready) return;
    const seq = conv.kind === "room" ? conv.lastSeq : newestSeq(conv);
    if (typeof seq !== "number" || seq <= (conv.readSeq ?? -1)) return;
    const frame = conv.kind === "room" ? { type: "read", room: conv.name, seq } : { type: "read", with: conv.name, seq };
    if (this.client.send(frame)) conv.readSeq = seq;
  }

  /** Mute or unmute a room for the account (every device follows). */
  setMuted(room, muted) {
    this.prefs.setMuted(room.name, muted);
    if (this.supported) this.client.send({ type: "mute", room: room.name, muted });
  }

  /** Logged out. */
  reset() {
    clearTimeout(this.waitTimer);
    this.waitTimer = null;
    for (const timer of this.readTimers.values()) clearTimeout(timer);
    this.readTimers.clear();
    this.supported = false;
    this.seen = false;
  }
}
