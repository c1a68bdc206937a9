// The message box and what was sent from it: a message shows at once,
// faded, and is tracked by its client id until the server's "ack" (stored:
// show its time) or "error" (not sent: say why, put the text back). Across
// a reconnect, room messages are matched against the catch-up and direct
// ones are marked failed (rooms.js and direct.js call in for that). Also
// tells the room that we are typing, at most every two seconds.

import { markConfirmed, markFailed, markUnconfirmed, pendingItem, setStoredId } from "./render.js";

const TYPING_SEND_EVERY_MS = 2000;

export class Composer {
  /**
   * @param {object} options
   * @param {{form: HTMLFormElement, input: HTMLInputElement}} options.elements
   * @param {import("./client.js").ChatClient} options.client
   * @param {import("./session.js").Session} options.session
   * @param {import("./conversations.js").Conversations} options.conversations
   * @param {import("./view.js").PageView} options.view
   */
  constructor({ elements, client, session, conversations, view }) {
    this.input = elements.input;
    this.client = client;
    this.session = session;
    this.conversations = conversations;
    this.view = view;
    /** Client id -> {conv, body, li, generation} until ack or error. */
    this.pending = new Map();
    this.lastTypingSent = 0;
    elements.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("input", () => this.typed());
  }

  /** Send what is in the box to the open conversation. */
  send() {
    const conv = this.conversations.current;
    const text = this.input.value;
    if (!conv || !text.trim()) return;
    if (!this.client.ready) {
      this.view.showAlert(
        "Not connected right now. Your message is still in the box: send it again when the connection is back.",
      );
      return;
    }
    const frame =
      conv.kind === "room" ? { type: "message", room: conv.name, body: text } : { type: "chat", to: conv.name, content: text };
    const id = this.client.sendWithId(frame, "m");
    if (id === null) {
      this.view.showAlert("Not connected right now: the message was not sent.");
      return;
    }
    const li = pendingItem(this.session.me.nickname, text);
    conv.log.append(li);
    conv.log.scrollToEnd();
    this.pending.set(id, { conv, body: text, li, generation: this.client.generation });
    this.input.value = "";
  }

  typed() {
    const conv = this.conversations.current;
    const now = Date.now();
    if (!conv || conv.kind !== "room" || !conv.joined || !this.client.started || !this.input.value) return;
    if (now - this.lastTypingSent < TYPING_SEND_EVERY_MS) return;
    this.lastTypingSent = now;
    this.client.send({ type: "typing", room: conv.name });
  }

  /** "ack": the message was stored. */
  onAck(frame) {
    const pending = this.pending.get(frame.id);
    if (!pending) return;
    this.pending.delete(frame.id);
    const { conv, li } = pending;
    markConfirmed(li, frame.timestamp);
    if (typeof frame.message_id === "number") {
      if (!conv.confirmOwn(frame.message_id)) {
        li.remove(); // the stored copy is already shown (history or a resume got there first)
        return;
      }
      setStoredId(li, frame.message_id);
    }
  }

  /** An "error" frame: if it refused a message of ours, mark it and put the
   * text back in the box (to be shortened or sent again). */
  refused(frame) {
    const pending = frame.id !== undefined ? this.pending.get(frame.id) : undefined;
    if (!pending) return;
    this.pending.delete(frame.id);
    markFailed(pending.li, `not sent: ${frame.content || frame.code}`);
    if (!this.input.value && this.conversations.isOpen(pending.conv)) this.input.value = pending.body;
  }

  /** The connection dropped: nothing sent is confirmed any more. */
  connectionLost() {
    for (const pending of this.pending.values()) markUnconfirmed(pending.li);
  }

  /** Connected again. Unconfirmed direct messages are marked failed; one
   * that was stored after all comes back with the conversation's history
   * and replaces its copy. */
  connectionReady() {
    for (const [id, pending] of this.pending) {
      if (pending.conv.kind === "dm") {
        this.pending.delete(id);
        markFailed(pending.li, "the connection was lost before the server confirmed it");
      }
    }
  }

  /** A resumed room message ``m`` of ours: if it is one we sent before the
   * reconnect and never saw acknowledged, drop our unconfirmed copy (the
   * stored one is shown in its place). */
  adoptResumed(room, m) {
    for (const [id, pending] of this.pending) {
      if (pending.conv === room && pending.body === m.body && pending.generation < this.client.generation) {
        this.pending.delete(id);
        pending.li.remove();
        return;
      }
    }
  }

  /** The room caught up after a reconnect: what we sent before it that the
   * catch-up did not contain was not sent. */
  failStale(room) {
    for (const [id, pending] of this.pending) {
      if (pending.conv === room && pending.generation < this.client.generation) {
        this.pending.delete(id);
        markFailed(pending.li, "not sent: the connection was lost");
      }
    }
  }

  reset() {
    this.pending.clear();
  }
}
