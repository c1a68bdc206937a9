// What this browser remembers for an account between sessions, in
// localStorage: rooms muted, and whether to show notifications. Per
// nickname, so two accounts used in one browser keep their own.
//
// Mutes belong to the account on a server that keeps account state:
// state.js writes the server's word here (and sends changes with "mute"),
// so this copy is what the page shows until the server has spoken.

const PREFIX = "parkchat.prefs.";

export class Preferences {
  /** @param {Storage} storage  localStorage (a stand-in in tests) */
  constructor(storage) {
    this.storage = storage;
    this.key = null;
    this.muted = new Set();
    this.notifications = false;
  }

  /** Read the preferences of ``nickname`` (at login). */
  load(nickname) {
    this.key = PREFIX + nickname.toLowerCase();
    let saved = null;
    try {
      saved = JSON.parse(this.storage.getItem(this.key) || "null");
    } catch {
      saved = null;
    }
    const muted = saved && Array.isArray(saved.muted) ? saved.muted : [];
    this.muted = new Set(muted.filter((name) => typeof name === "string"));
    this.notifications = Boolean(saved && saved.notifications === true);
  }

  /** Logged out: nothing is read or written until the next login. */
  unload() {
    this.key = null;
    this.muted = new Set();
    this.notifications = false;
  }

  isMuted(room) {
    return this.muted.has(room);
  }

  setMuted(room, muted) {
    if (muted) this.muted.add(room);
    else this.muted.delete(room);
    this.save();
  }

  setNotifications(on) {
    this.notifications = on;
    this.save();
  }

  save() {
    if (this.key === null) return;
    try {
      this.storage.setItem(this.key, JSON.stringify({ muted: [...this.muted], notifications: this.notifications }));
    } catch {
      // Storage full or refused (private mode): the setting lasts this session.
    }
  }
}
