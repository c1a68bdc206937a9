// Getting attention while the tab is in the background: a count of new
// messages in the title ("(3) parkchat") while the tab is hidden, cleared
// when it is visible again, and a browser notification for a direct message
// or a mention. Permission to notify is asked for only when the person
// presses the notifications button (browsers ignore or penalise a prompt
// that no gesture asked for). Muted rooms add nothing, unless they mention
// you.

const BASE_TITLE = "parkchat";
/** Longest notification text (the browser cuts it anyway). */
const NOTIFY_BODY_CHARS = 160;

/** The mention pattern for a nickname (compiled once per nickname). */
const MENTION_CACHE_SIZE = 8;

/**
 * The names in a message's ``mentions`` list (from the server) that mean
 * ``nickname``: the nickname itself (names ignore case), "@room" and
 * "@here".
 * @param {{mentions?: unknown}} message
 * @param {string} nickname
 * @returns {string[]}
 */
export function mentionsOf(message, nickname) {
  if (!Array.isArray(message.mentions) || !nickname) return [];
  const me = nickname.toLowerCase();
  return message.mentions.filter(
    (name) => typeof name === "string" && (name.toLowerCase() === me || name === "@room" || name === "@here"),
  );
}

/**
 * Whether a message mentions ``nickname``: the one place that decides.
 * The server parses mentions when a message is posted and sends the names
 * as a ``mentions`` list (docs/websocket.md, "Mentions"): the message
 * mentions us if that list names us, @room or @here. From a server that
 * sends no lists (``serverLists`` false: it has no account state), an
 * ``@nickname`` word in the body is the stand-in.
 *
 * @param {{body: string, mentions?: string[]}} message
 * @param {string} nickname  ours
 * @param {Map<string, RegExp>} cache  patterns by nickname
 * @param {boolean} [serverLists]  the server sends ``mentions`` lists
 */
export function isMention(message, nickname, cache, serverLists = false) {
  if (!nickname || typeof message.body !== "string") return false;
  if (Array.isArray(message.mentions) || serverLists) return mentionsOf(message, nickname).length > 0;
  let pattern = cache.get(nickname);
  if (!pattern) {
    const escaped = nickname.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    // "@alice" as a word: not inside an e-mail address, not "@alice2".
    pattern = new RegExp(`(?<![\\p{L}\\p{N}_@.])@${escaped}(?![\\p{L}\\p{N}_-])`, "iu");
    if (cache.size >= MENTION_CACHE_SIZE) cache.clear();
    cache.set(nickname, pattern);
  }
  return pattern.test(message.body);
}

export class Attention {
  /**
   * @param {object} options
   * @param {HTMLButtonElement} options.button  the notifications toggle
   * @param {import("./preferences.js").Preferences} options.prefs
   * @param {(conv: object) => void} options.onOpen  a notification was
   *   clicked: open its conversation
   * @param {(text: string) => void} options.onProblem  say something went wrong
   * @param {Document} [options.doc]
   * @param {Window} [options.win]
   */
  constructor({ button, prefs, onOpen, onProblem, doc = document, win = window }) {
    this.button = button;
    this.prefs = prefs;
    this.onOpen = onOpen;
    this.onProblem = onProblem;
    this.doc = doc;
    this.win = win;
    /** New messages since the tab was hidden. */
    this.count = 0;
    /** The server sends each message's mentions (it keeps account state). */
    this.serverMentions = false;
    this.mentionPatterns = new Map();
    doc.addEventListener("visibilitychange", () => {
      if (!this.hidden) this.clear();
    });
    button.addEventListener("click", () => this.toggle());
  }

  get hidden() {
    return this.doc.visibilityState === "hidden";
  }

  /** Whether a message mentions ``nickname`` (see isMention). */
  mentions(message, nickname) {
    return isMention(message, nickname, this.mentionPatterns, this.serverMentions);
  }

  /** A message from someone else arrived live in ``conv``:
   * {username, body, mention}. */
  incoming(conv, message) {
    if (!this.hidden) return;
    const muted = conv.kind === "room" && this.prefs.isMuted(conv.name);
    if (muted && !message.mention) return;
    this.count += 1;
    this.doc.title = `(${this.count}) ${BASE_TITLE}`;
    if (conv.kind === "dm" || message.mention) this.notify(conv, message);
  }

  clear() {
    this.count = 0;
    this.doc.title = BASE_TITLE;
  }

  /** The browser's notifications, if it has them. */
  get api() {
    return "Notification" in this.win ? this.win.Notification : null;
  }

  get enabled() {
    const api = this.api;
    return Boolean(api) && api.permission === "granted" && this.prefs.notifications;
  }

  notify(conv, message) {
    if (!this.enabled) return;
    const where = conv.kind === "dm" ? message.username : `${message.username} in #${conv.name}`;
    const body = message.body.length > NOTIFY_BODY_CHARS ? `${message.body.slice(0, NOTIFY_BODY_CHARS)}…` : message.body;
    try {
      const note = new this.api(where, { body, tag: `${conv.kind}:${conv.name}` });
      note.onclick = () => {
        this.win.focus();
        this.onOpen(conv);
        note.close();
      };
    } catch {
      // Some browsers only notify from a service worker: the title badge stays.
    }
  }

  /** The notifications button: asks for permission the first time (this
   * runs in its click, the gesture browsers want). */
  async toggle() {
    const api = this.api;
    if (!api) {
      this.onProblem("This browser cannot show notifications.");
      return;
    }
    if (this.prefs.notifications) {
      this.prefs.setNotifications(false);
      this.render();
      return;
    }
    let permission = api.permission;
    if (permission === "default") permission = await api.requestPermission();
    if (permission !== "granted") {
      this.onProblem("Notifications are blocked for this site in the browser's settings.");
      this.render();
      return;
    }
    this.prefs.setNotifications(true);
    this.render();
  }

  /** Show the button as on or off (pressed); its name stays the same. */
  render() {
    this.button.setAttribute("aria-pressed", String(this.enabled));
  }

  /** Logged out: no badge. */
  reset() {
    this.serverMentions = false;
    this.clear();
    this.render();
  }
}
