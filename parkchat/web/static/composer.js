// The message box and what was sent from it. The box is a textarea: Enter
// sends, Shift+Enter (or a paste) puts in new lines, and it grows with what
// is typed up to a few lines, then scrolls. A message shows at once, faded,
// and is tracked by its client id until the server's "ack" (stored: show its
// time) or "error" (not sent: say why, put the text back). Across a
// reconnect, room messages are matched against the catch-up and direct ones
// are marked failed (rooms.js and direct.js call in for that). Also tells
// the room that we are typing, at most every two seconds.

const TYPING_SEND_EVERY_MS = 2000;
/** The box grows to this many lines, then scrolls. */
const MAX_ROWS = 6;

export class Composer {
  /**
   * @param {object} options
   * @param {{form: HTMLFormElement, input: HTMLTextAreaElement}} options.elements
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
    /** Client id -> {conv, body, entry, generation} until ack or error. */
    this.pending = new Map();
    this.lastTypingSent = 0;
    /** The style sheet sizes the box to its content (field-sizing); else
     * its rows follow the number of lines. */
    this.sizedByStyle = typeof CSS !== "undefined" && CSS.supports("field-sizing", "content");
    elements.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      // Enter sends; Shift+Enter is a new line; Enter that ends an input
      // method's composition (Japanese, Chinese…) is not a send.
      if (event.key !== "Enter" || event.shiftKey || event.altKey || event.isComposing) return;
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("input", () => {
      this.resize();
      this.typed();
    });
  }

  /** Put text in the box (or empty it) and fit the box to it. */
  setText(text) {
    this.input.value = text;
    this.resize();
  }

  resize() {
    if (this.sizedByStyle) return;
    const lines = this.input.value.split("\n").length;
    this.input.rows = Math.min(MAX_ROWS, Math.max(1, lines));
  }

  /** Send what is in the box to the open conversation. */
  send() {
    const conv = this.conversations.current;
    const text = this.input.value;
    if (!conv || !text.trim()) return;
    if (!this.client.ready) {
      this.view.showAlert(
        "Not connected right now. Your message is still in the box: send it again when the connection is back.",
        undefined,
        { passing: true },
      );
      return;
    }
    const frame =
      conv.kind === "room" ? { type: "message", room: conv.name, body: text } : { type: "chat", to: conv.name, content: text };
    const id = this.client.sendWithId(frame, "m");
    if (id === null) {
      this.view.showAlert("Not connected right now: the message was not sent.", undefined, { passing: true });
      return;
    }
    // Showing a search result far back: the newest messages come back first.
    if (conv.log.detached) conv.log.onBackToEnd();
    const entry = conv.log.appendPending(this.session.me.nickname, text);
    conv.log.jumpToEnd();
    this.pending.set(id, { conv, body: text, entry, generation: this.client.generation });
    this.setText("");
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
    const { conv, entry } = pending;
    if (typeof frame.message_id === "number") {
      if (!conv.confirmOwn(frame.message_id)) {
        conv.log.remove(entry); // the stored copy is already shown (history or a resume got there first)
        return;
      }
      conv.log.setId(entry, frame.message_id);
    }
    const seq = typeof frame.seq === "number" ? frame.seq : null;
    // Stored room messages of ours can be edited and deleted (editing.js).
    conv.log.update(entry, { state: null, timestamp: frame.timestamp, seq, editable: conv.kind === "room" && seq !== null });
  }

  /** An "error" frame: if it refused a message of ours, mark it and put the
   * text back in the box (to be shortened or sent again). */
  refused(frame) {
    const pending = frame.id !== undefined ? this.pending.get(frame.id) : undefined;
    if (!pending) return;
    this.pending.delete(frame.id);
    this.fail(pending, `not sent: ${frame.content || frame.code}`);
    if (!this.input.value && this.conversations.isOpen(pending.conv)) this.setText(pending.body);
  }

  fail(pending, why) {
    pending.conv.log.update(pending.entry, { state: "failed", error: why });
  }

  /** The connection dropped: nothing sent is confirmed any more. */
  connectionLost() {
    for (const pending of this.pending.values()) pending.conv.log.update(pending.entry, { state: "unconfirmed" });
  }

  /** Connected again. Unconfirmed direct messages are marked failed; one
   * that was stored after all comes back with the conversation's history
   * and replaces its copy. */
  connectionReady() {
    for (const [id, pending] of this.pending) {
      if (pending.conv.kind === "dm") {
        this.pending.delete(id);
        this.fail(pending, "the connection was lost before the server confirmed it");
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
        room.log.remove(pending.entry);
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
        this.fail(pending, "not sent: the connection was lost");
      }
    }
  }

  reset() {
    this.pending.clear();
    this.setText("");
  }
}
