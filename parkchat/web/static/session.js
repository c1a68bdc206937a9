// Who is logged in, and what survives a reload or the tab. The signed token
// from POST /login lives in this tab's sessionStorage only (a reload keeps
// it; never in a URL or a cookie), with the names of the joined rooms and
// the open direct conversations, so that a reload shows them at once. A
// login with "Keep me signed in" also gets a refresh token (docs/websocket.md,
// "Long-lived logins"), kept in localStorage: a new tab, or the browser
// opened again, renews the login with it (POST /refresh) instead of asking
// for the password, and lands in the conversation that was open last. The
// rooms and conversations themselves follow the account on the server
// (state.js); what is kept here is only what the page shows before the
// server has said.

const SESSION_KEY = "parkchat.session";
const ROOMS_KEY = "parkchat.rooms";
const DMS_KEY = "parkchat.dms";
const CURRENT_KEY = "parkchat.current";
/** localStorage: the refresh token of a remembered login. */
const REMEMBER_KEY = "parkchat.remember";
/** localStorage: the conversation open last, per nickname. */
const LAST_KEY = "parkchat.last.";
/** localStorage: when a tab last logged out (the other tabs follow). */
const LOGOUT_KEY = "parkchat.logout";

/** A {kind, name} conversation reference, or null. */
function conversationRef(value) {
  return value && typeof value.name === "string" && ["room", "dm"].includes(value.kind)
    ? { kind: value.kind, name: value.name }
    : null;
}

function readJson(storage, key, fallback) {
  try {
    const value = JSON.parse(storage.getItem(key) || "null");
    return value === null ? fallback : value;
  } catch {
    return fallback;
  }
}

export class Session {
  /**
   * @param {Storage} storage  the tab's sessionStorage (a stand-in in tests)
   * @param {Storage} [lasting]  localStorage: what outlives the tab
   */
  constructor(storage, lasting = storage) {
    this.storage = storage;
    this.lasting = lasting;
    /** {token, nickname, user_id, expires_at} while logged in, else null. */
    this.me = null;
  }

  /** Logged in as ``me`` (an answer of POST /login or /refresh). */
  begin(me) {
    this.me = me;
    this.storage.setItem(SESSION_KEY, JSON.stringify(me));
  }

  /** Logged out: forget everything, the refresh token included. */
  end() {
    this.me = null;
    this.storage.removeItem(SESSION_KEY);
    this.storage.removeItem(ROOMS_KEY);
    this.storage.removeItem(DMS_KEY);
    this.storage.removeItem(CURRENT_KEY);
    this.forgetRefresh();
  }

  /** A new token for the same login (a refresh, or after a password
   * change); false if ``me`` logged out meanwhile. */
  renew(me, token, expiresAt) {
    if (this.me !== me) return false;
    me.token = token;
    me.expires_at = expiresAt;
    this.storage.setItem(SESSION_KEY, JSON.stringify(me));
    return true;
  }

  /** The session this tab had before a reload, if its token has not
   * expired: {me, rooms, dms, current}, else null. ``current`` is the
   * conversation that was open ({kind, name}) or null. */
  restore() {
    const me = readJson(this.storage, SESSION_KEY, null);
    if (!me || typeof me.token !== "string" || !(Date.parse(me.expires_at) > Date.now())) {
      this.storage.removeItem(SESSION_KEY);
      return null;
    }
    const names = (list) => (Array.isArray(list) ? list.filter((n) => typeof n === "string") : []);
    return {
      me,
      rooms: names(readJson(this.storage, ROOMS_KEY, [])),
      dms: names(readJson(this.storage, DMS_KEY, [])),
      current: conversationRef(readJson(this.storage, CURRENT_KEY, null)) || this.lastOpen(me.nickname),
    };
  }

  /** Remember which conversation is open (for a reload, and for the next
   * tab of this account). */
  saveCurrent(kind, name) {
    this.storage.setItem(CURRENT_KEY, JSON.stringify({ kind, name }));
    if (this.me) this.setLasting(LAST_KEY + this.me.nickname.toLowerCase(), { kind, name });
  }

  /** The conversation open last in any tab of ``nickname``, or null. */
  lastOpen(nickname) {
    return conversationRef(readJson(this.lasting, LAST_KEY + nickname.toLowerCase(), null));
  }

  saveRooms(names) {
    this.storage.setItem(ROOMS_KEY, JSON.stringify(names));
  }

  saveDms(names) {
    this.storage.setItem(DMS_KEY, JSON.stringify(names));
  }

  // -- the long-lived login ---------------------------------------------------

  /** Keep a refresh token (``expiresIn`` seconds) for ``nickname``. */
  saveRefresh(nickname, refreshToken, expiresIn) {
    const expires = Date.now() + Math.max(0, Number(expiresIn) || 0) * 1000;
    this.setLasting(REMEMBER_KEY, { nickname, refresh_token: refreshToken, expires_at: new Date(expires).toISOString() });
  }

  /** The remembered login, if its refresh token has not expired:
   * {nickname, refresh_token}, else null. */
  remembered() {
    const saved = readJson(this.lasting, REMEMBER_KEY, null);
    if (!saved || typeof saved.refresh_token !== "string" || typeof saved.nickname !== "string") return null;
    if (!(Date.parse(saved.expires_at) > Date.now())) {
      this.forgetRefresh();
      return null;
    }
    return saved;
  }

  forgetRefresh() {
    try {
      this.lasting.removeItem(REMEMBER_KEY);
    } catch {
      // Storage refused: nothing was kept either.
    }
  }

  /** Tell the other tabs of this browser that we logged out. */
  announceLogout() {
    this.setLasting(LOGOUT_KEY, Date.now());
  }

  /** Whether a storage event says another tab logged out. */
  isLogoutEvent(event) {
    return event.key === LOGOUT_KEY && event.newValue !== null;
  }

  setLasting(key, value) {
    try {
      this.lasting.setItem(key, JSON.stringify(value));
    } catch {
      // Storage full or refused (private mode): it lasts this tab only.
    }
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
