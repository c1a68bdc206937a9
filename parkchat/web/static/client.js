// The page's side of /ws (docs/websocket.md) above the connection itself:
// requests carry a fresh id and remember what they were for, and every
// frame from the server goes through one routing table (set up by app.js)
// to the object that owns its type, together with the request it answers.
// connection.js keeps the socket up; this counts its "ready"s (the
// generation), so that work started before a reconnect can be told apart.

import { ChatConnection } from "./connection.js";

/** How many messages the page asks for at a time (room and DM history). */
export const HISTORY_PAGE = 50;

export class ChatClient {
  /**
   * @param {object} options
   * @param {(state: string, detail?: object) => void} options.onState
   *   the connection's state changes (see ChatConnection)
   * @param {(options: object) => ChatConnection} [options.connect]
   *   makes the connection (a stand-in in tests)
   */
  constructor({ onState, connect = (options) => new ChatConnection(options) }) {
    this.onState = onState;
    this.connect = connect;
    this.conn = null;
    /** Frame type -> handler(frame, request). */
    this.routes = new Map();
    /** Client id -> what the request was for ({kind, ...}). */
    this.requests = new Map();
    /** How many times the connection became ready. */
    this.generation = 0;
  }

  /** Add routes: {type: (frame, request) => void}; a type has one owner. */
  route(table) {
    for (const [type, handler] of Object.entries(table)) {
      if (this.routes.has(type)) throw new Error(`two handlers for "${type}" frames`);
      this.routes.set(type, handler);
    }
  }

  /** Connect with a login token (and keep reconnecting until stop). */
  start(token) {
    this.conn = this.connect({
      token,
      onFrame: (frame) => this.dispatch(frame),
      onState: (name, detail) => this.stateChanged(name, detail),
    });
    this.conn.start();
  }

  /** Close for good (logout); answers still on their way are forgotten. */
  stop() {
    if (this.conn) this.conn.stop();
    this.conn = null;
    this.requests.clear();
  }

  /** Between start and stop (connected or trying to be). */
  get started() {
    return this.conn !== null;
  }

  /** Authenticated: frames can be sent. */
  get ready() {
    return this.conn !== null && this.conn.ready;
  }

  /** The token the next reconnect authenticates with. */
  setToken(token) {
    if (this.conn) this.conn.token = token;
  }

  /** See Connection.expectLogout (a password change by this page). */
  expectLogout(ms) {
    if (this.conn) this.conn.expectLogout(ms);
  }

  reconnectNow() {
    if (this.conn) this.conn.reconnectNow();
  }

  /** Send a frame with a fresh client id and remember what it was for
   * (``what.kind`` names it); returns the id, or null if it did not go. */
  request(frame, what) {
    if (!this.conn) return null;
    const id = this.conn.newId(what.kind.slice(0, 3));
    frame.id = id;
    if (!this.conn.send(frame)) return null;
    this.requests.set(id, what);
    return id;
  }

  /** Send a frame with a fresh id that the caller tracks itself (a message
   * and its ack); returns the id, or null if it did not go. */
  sendWithId(frame, prefix) {
    if (!this.conn) return null;
    const id = this.conn.newId(prefix);
    frame.id = id;
    return this.conn.send(frame) ? id : null;
  }

  /** Send a frame that expects no answer; returns whether it went. */
  send(frame) {
    return this.conn !== null && this.conn.send(frame);
  }

  stateChanged(name, detail) {
    if (name === "ready") this.generation += 1;
    this.onState(name, detail);
  }

  dispatch(frame) {
    const what = frame.id !== undefined ? this.requests.get(frame.id) : undefined;
    if (what && !answersMore(frame)) this.requests.delete(frame.id);
    const handler = this.routes.get(frame.type);
    if (handler) handler(frame, what);
  }
}

/** Whether more frames will answer the same request after ``frame``: a
 * resuming join is answered by "joined", then as many "history" frames as
 * the missed messages need (docs/websocket.md, Resume); any history answer
 * larger than the frame limit comes in several frames, "last": false on all
 * but the final one. */
export function answersMore(frame) {
  if (frame.type === "joined") {
    const resume = frame.resume;
    return Boolean(resume) && typeof resume === "object" && Number(resume.count) > 0;
  }
  if (frame.type === "history" || frame.type === "direct_history") return frame.last === false;
  return false;
}
