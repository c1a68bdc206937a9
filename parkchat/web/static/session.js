// Who is logged in, and what survives a reload of the tab. The token from
// POST /login lives in this tab's sessionStorage only (gone when the tab
// closes, never in a URL or a cookie), with the names of the joined rooms
// and the open direct conversations, so that reloading keeps you in.

const SESSION_KEY = "parkchat.session";
const ROOMS_KEY = "parkchat.rooms";
const DMS_KEY = "parkchat.dms";

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
   * expired: {me, rooms, dms}, else null. */
  restore() {
    let me = null;
    let rooms = [];
    let dms = [];
    try {
      me = JSON.parse(this.storage.getItem(SESSION_KEY) || "null");
      rooms = JSON.parse(this.storage.getItem(ROOMS_KEY) || "[]");
      dms = JSON.parse(this.storage.getItem(DMS_KEY) || "[]");
    } catch {
      me = null;
    }
    if (!me || typeof me.token !== "string" || !(Date.parse(me.expires_at) > Date.now())) {
      this.storage.removeItem(SESSION_KEY);
      return null;
    }
    const names = (list) => (Array.isArray(list) ? list.filter((n) => typeof n === "string") : []);
    return { me, rooms: names(rooms), dms: names(dms) };
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
