// One WebSocket to /ws that stays up: it authenticates with an auth frame
// (so the token never appears in a URL or an access log), reconnects with
// exponential backoff and jitter when the connection drops, and notices a
// dead connection with application pings. What to do after (re)connecting,
// such as re-joining rooms from their last seen id, is the caller's job:
// it gets a "ready" frame every time.

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const PING_EVERY_MS = 25000;
const PONG_WITHIN_MS = 10000;

// Close codes after which reconnecting cannot help (docs/websocket.md).
const CLOSE_POLICY = 1008;
const CLOSE_BANNED = 4003;
const CLOSE_REPLACED = 4004;
const CLOSE_LOGGED_OUT = 4005;

/** The /ws URL of the server this page came from (wss: under https:). */
export function socketUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class ChatConnection {
  /**
   * @param {object} options
   * @param {string} options.token  a login token from POST /login
   * @param {(frame: object) => void} options.onFrame  every frame from the server
   * @param {(state: string, detail?: object) => void} options.onState
   *   "connecting", "ready", "waiting" ({seconds}), "stopped" ({reason, message})
   * @param {string} [options.url]
   */
  constructor({ token, onFrame, onState, url = socketUrl() }) {
    this.token = token;
    this.onFrame = onFrame;
    this.onState = onState;
    this.url = url;
    this.ws = null;
    this.ready = false;
    this.stopped = false;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.nextId = 1;
    this.fatal = null;
    // Until this time (ms), a "logged out" close is expected (this page
    // changed the password) and means "reconnect with the new token".
    this.logoutExpectedUntil = 0;
    this.onOnline = () => {
      if (this.retryTimer !== null) this.reconnectNow();
    };
    window.addEventListener("online", this.onOnline);
  }

  /** This page is changing the password: the server closes every
   * connection of the account (4005), this one included, and the page
   * reconnects with the token of its new login instead of logging out. */
  expectLogout(ms) {
    this.logoutExpectedUntil = Date.now() + ms;
  }

  /** A fresh client id for a frame's "id" field (echoed in the reply). */
  newId(prefix = "c") {
    return `${prefix}${this.nextId++}`;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Close for good (logout): no reconnect. */
  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    this.clearTimers();
    if (this.ws) {
      const ws = this.ws;
      this.detach(ws);
      this.ws = null;
      ws.close(1000, "bye");
    }
    this.ready = false;
  }

  /** Skip the rest of the backoff wait. */
  reconnectNow() {
    if (this.ws && this.ready) return;
    this.clearTimers();
    this.stopped = false;
    this.fatal = null;
    this.attempt = 0;
    if (this.ws) {
      const ws = this.ws;
      this.detach(ws);
      this.ws = null;
      ws.close();
    }
    this.connect();
  }

  /** Send a frame if the connection is authenticated; returns whether it went. */
  send(frame) {
    if (!this.ws || !this.ready || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // -- internals -------------------------------------------------------------

  connect() {
    this.clearTimers();
    this.ready = false;
    this.fatal = null;
    this.onState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      this.onState("stopped", { reason: "error", message: String(error) });
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", body: this.token, id: this.newId("auth") }));
    };
    ws.onmessage = (event) => this.received(event.data);
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
    // An error is always followed by a close event; nothing to do here.
    ws.onerror = () => {};
  }

  received(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "ready") {
      this.ready = true;
      this.attempt = 0;
      this.schedulePing();
      this.onState("ready");
    } else if (frame.type === "pong") {
      if (this.pongTimer !== null) {
        clearTimeout(this.pongTimer);
        this.pongTimer = null;
      }
      return;
    } else if (frame.type === "error" && !this.ready) {
      if (frame.code === "unauthorized" || frame.code === "banned") this.fatal = frame;
    }
    this.onFrame(frame);
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.detach(ws);
    this.ws = null;
    this.ready = false;
    this.clearTimers();
    if (this.stopped) return;
    const fatal = this.fatalReason(code, reason);
    if (fatal) {
      this.stopped = true;
      this.onState("stopped", fatal);
      return;
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const jittered = Math.round(delay * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.onState("waiting", { seconds: Math.max(1, Math.round(jittered / 1000)), code, reason });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, jittered);
  }

  fatalReason(code, reason) {
    if (code === CLOSE_BANNED || (this.fatal && this.fatal.code === "banned")) {
      return { reason: "banned", message: "This account is banned." };
    }
    if (this.fatal && this.fatal.code === "unauthorized") {
      return { reason: "unauthorized", message: "Your session has expired: please log in again." };
    }
    if (code === CLOSE_LOGGED_OUT && Date.now() < this.logoutExpectedUntil) {
      return null;
    }
    if (code === CLOSE_LOGGED_OUT) {
      return { reason: "logged_out", message: "This session was logged out (from here or another device): please log in again." };
    }
    if (code === CLOSE_REPLACED) {
      return { reason: "replaced", message: "You opened parkchat somewhere else, so this window was disconnected." };
    }
    if (code === CLOSE_POLICY && /token/i.test(reason || "")) {
      return { reason: "unauthorized", message: "Your session has expired: please log in again." };
    }
    return null;
  }

  schedulePing() {
    if (this.pingTimer !== null) clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => {
      this.pingTimer = null;
      if (!this.send({ type: "ping", id: this.newId("ping") })) return;
      this.pongTimer = setTimeout(() => {
        // No answer: the connection is dead even if the browser has not noticed.
        this.pongTimer = null;
        if (this.ws) {
          const ws = this.ws;
          ws.close();
          this.closed(ws, 1006, "no pong");
        }
      }, PONG_WITHIN_MS);
      this.schedulePing();
    }, PING_EVERY_MS);
  }

  clearTimers() {
    for (const name of ["retryTimer", "pingTimer", "pongTimer"]) {
      if (this[name] !== null) {
        clearTimeout(this[name]);
        this[name] = null;
      }
    }
  }

  detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }
}
