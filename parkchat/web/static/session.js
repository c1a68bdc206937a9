// Who is logged in, and what survives a reload of the tab. The token from
// POST /login lives in this tab's sessionStorage only (gone when the tab
// closes, never in a URL or a cookie), with the names of the joined rooms
// and the open direct conversations, so that reloading keeps you in.

const SESSION_KEY = "parkchat.session";
const ROOMS_KEY = "parkchat.rooms";
const DMS_KEY = "parkchat.dms";
const CURRENT_KEY = "parkchat.current";

export class Session {
  /** @param {Storage} storage  the tab's sessionStorage (a stand-in in tests) */
  constructor(storage) {
    this.storage = storage;
    /** {token, nickname, user_id, expires_at} while logged in, else null. */
    this.me = null;
  }

  /** Logged in as ``me`` (an answer of POST /login). */
  begin(me) {
    this.me = me;
    this.storage.setItem(SESSION_KEY, JSON.stringify(me));
  }

  /** Logged out: forget everything. */
  end() {
    this.me = null;
    this.storage.removeItem(SESSION_KEY);
    this.storage.removeItem(ROOMS_KEY);
    this.storage.removeItem(DMS_KEY);
    this.storage.removeItem(CURRENT_KEY);
  }

  /** A new token for the same login (after a password change); false if
   * ``me`` logged out meanwhile. */
  renew(me, token, expiresAt) {
    if (this.me !== me) return false;
    me.token = token;
    me.expires_at = expiresAt;
    this.storage.setItem(SESSION_KEY, JSON.stringify(me));
    return true;
  }

  /** The session this tab had before a reload, if its token has not
   * expired: {me, rooms, dms, current}, else null. ``current`` is the
   * conversation that was open ({kind, name}) or null.
   *
   * TODO(#16): server account state. Rooms, conversations and the last
   * open one will come from the account on the server (the same on every
   * device, surviving the tab); this tab's copy is what the page has until
   * then. */
  restore() {
    let me = null;
    let rooms = [];
    let dms = [];
    let current = null;
    try {
      me = JSON.parse(this.storage.getItem(SESSION_KEY) || "null");
      rooms = JSON.parse(this.storage.getItem(ROOMS_KEY) || "[]");
      dms = JSON.parse(this.storage.getItem(DMS_KEY) || "[]");
      current = JSON.parse(this.storage.getItem(CURRENT_KEY) || "null");
    } catch {
      me = null;
    }
    if (!me || typeof me.token !== "string" || !(Date.parse(me.expires_at) > Date.now())) {
      this.storage.removeItem(SESSION_KEY);
      return null;
    }
    const names = (list) => (Array.isArray(list) ? list.filter((n) => typeof n === "string") : []);
    const open = current && typeof current.name === "string" && ["room", "dm"].includes(current.kind) ? current : null;
    return { me, rooms: names(rooms), dms: names(dms), current: open };
  }

  /** Remember which conversation is open (for a reload). */
  saveCurrent(kind, name) {
    this.storage.setItem(CURRENT_KEY, JSON.stringify({ kind, name }));
  }

  saveRooms(names) {
    this.storage.setItem(ROOMS_KEY, JSON.stringify(names));
  }

  saveDms(names) {
    this.storage.setItem(DMS_KEY, JSON.stringify(names));
  }

  /** Whether a nickname is ours (nicknames are case-insensitive). */
  isMe(name) {
    return Boolean(this.me) && typeof name === "string" && name.toLowerCase() === this.me.nickname.toLowerCase();
  }

  /** Whether a user id is ours. */
  isMyUserId(userId) {
    return Boolean(this.me) && userId === this.me.user_id;
  }
}
