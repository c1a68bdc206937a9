// Editing and deleting your own room messages (docs/websocket.md, "edit",
// "delete"). Each of your stored room messages has "Edit" and "Delete"
// buttons (render.js draws them); a click on one is caught here, on the
// element that holds the open conversation, so no message carries a
// listener of its own. "Edit" turns the message into a box with its text:
// Enter saves, Shift+Enter is a new line, Escape cancels. "Delete" asks
// first, in a dialog. The server answers with an "ack", and everyone in the
// room, this page included, gets "edited" or "deleted" (rooms.js applies
// them); until then the message shows its new text, faded.

export class MessageEditing {
  /**
   * @param {object} options
   * @param {HTMLElement} options.container  holds the open conversation's log
   * @param {object} options.dialog  dialog, form, preview, cancel: the
   *   "Delete this message?" dialog
   * @param {import("./client.js").ChatClient} options.client
   * @param {import("./conversations.js").Conversations} options.conversations
   * @param {import("./view.js").PageView} options.view
   */
  constructor({ container, dialog, client, conversations, view }) {
    this.client = client;
    this.conversations = conversations;
    this.view = view;
    this.dialog = dialog;
    /** The entry whose deletion the dialog asks about: {conv, entry}. */
    this.deleting = null;
    container.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      const found = button && this.entryOf(button);
      if (!found) return;
      const { conv, entry } = found;
      const action = button.dataset.action;
      if (action === "edit") this.start(conv, entry);
      else if (action === "save") this.save(conv, entry);
      else if (action === "cancel-edit") this.cancel(conv, entry);
      else if (action === "delete") this.askDelete(conv, entry);
    });
    container.addEventListener("keydown", (event) => {
      if (!event.target.matches || !event.target.matches("textarea.edit-box")) return;
      const found = this.entryOf(event.target);
      if (!found) return;
      if (event.key === "Escape") {
        event.preventDefault();
        this.cancel(found.conv, found.entry);
      } else if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.isComposing) {
        event.preventDefault();
        this.save(found.conv, found.entry);
      }
    });
    container.addEventListener("input", (event) => {
      if (!event.target.matches || !event.target.matches("textarea.edit-box")) return;
      const found = this.entryOf(event.target);
      if (found) found.entry.draft = event.target.value;
    });
    dialog.form.addEventListener("submit", (event) => {
      event.preventDefault();
      dialog.dialog.close();
      if (this.deleting) this.delete(this.deleting.conv, this.deleting.entry);
      this.deleting = null;
    });
    dialog.cancel.addEventListener("click", () => dialog.dialog.close());
    dialog.dialog.addEventListener("close", () => {
      const deleting = this.deleting;
      this.deleting = null;
      if (deleting) this.focusAction(deleting.conv, deleting.entry, "delete");
    });
  }

  /** The open conversation and the entry of the message ``node`` is in. */
  entryOf(node) {
    const conv = this.conversations.current;
    const item = node.closest("li.msg[data-id]");
    if (!conv || conv.kind !== "room" || !item) return null;
    const entry = conv.log.byId.get(Number(item.dataset.id));
    return entry && entry.mine ? { conv, entry } : null;
  }

  /** Turn a message into a box with its text, the cursor at its end. */
  start(conv, entry) {
    const other = conv.log.findLast((e) => e.editing && e !== entry);
    if (other) conv.log.update(other, { editing: false, draft: undefined });
    conv.log.update(entry, { editing: true, draft: entry.body });
    conv.log.flush();
    const box = entry.node && entry.node.querySelector("textarea.edit-box");
    if (box) {
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
    }
  }

  cancel(conv, entry) {
    conv.log.update(entry, { editing: false, draft: undefined });
    conv.log.flush();
    this.focusAction(conv, entry, "edit");
  }

  focusAction(conv, entry, action) {
    const button = entry.node && entry.node.querySelector(`button[data-action="${action}"]`);
    if (button) button.focus();
    else conv.log.scroller.focus();
  }

  /** Send the new text (nothing changed: just stop editing). */
  save(conv, entry) {
    const body = typeof entry.draft === "string" ? entry.draft : entry.body;
    if (!body.trim()) {
      this.view.showAlert("A message cannot be empty: use Delete to remove it.", undefined, { passing: true });
      return;
    }
    if (body === entry.body) {
      this.cancel(conv, entry);
      return;
    }
    const frame = { type: "edit", room: conv.name, seq: entry.seq, body };
    const id = this.client.request(frame, { kind: "edit", conv, entry, before: entry.body });
    if (id === null) {
      this.view.showAlert("Not connected right now: the message was not changed.", undefined, { passing: true });
      return;
    }
    conv.log.update(entry, { editing: false, draft: undefined, body, state: "pending" });
    conv.log.flush();
    this.focusAction(conv, entry, "edit");
  }

  askDelete(conv, entry) {
    this.deleting = { conv, entry };
    this.dialog.preview.textContent = entry.body;
    this.dialog.dialog.showModal();
    this.dialog.confirm.focus();
  }

  delete(conv, entry) {
    const id = this.client.request({ type: "delete", room: conv.name, seq: entry.seq }, { kind: "delete", conv, entry });
    if (id === null) {
      this.view.showAlert("Not connected right now: the message was not deleted.", undefined, { passing: true });
      return;
    }
    conv.log.update(entry, { state: "pending" });
  }

  /** "ack" of an edit or a deletion. */
  onAck(frame, what) {
    if (what.kind === "edit") {
      if (what.entry.state === "pending") what.conv.log.update(what.entry, { state: null });
    } else if (what.kind === "delete") {
      what.conv.log.remove(what.entry);
    }
  }

  /** An "error" answered one of our requests; returns true if it was an
   * edit or a deletion (its message is put back as it was). */
  requestFailed(what) {
    if (!what || (what.kind !== "edit" && what.kind !== "delete")) return false;
    const fields = what.kind === "edit" ? { state: null, body: what.before } : { state: null };
    what.conv.log.update(what.entry, fields);
    return false; // the error itself is still said (view.showError)
  }
}
