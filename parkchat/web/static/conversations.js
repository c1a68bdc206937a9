// The conversations the sidebar lists (rooms and direct messages alike),
// which one is open, unread counts, and drawing the open one: title, the
// line under it, "Load older messages", who is typing, who is online. The
// rooms and direct-message modules own what is in a conversation and tell
// this one when something changed; it never talks to the server.

import { clear } from "./dom.js";
import {
  conversationEntry,
  conversationMeta,
  conversationTitle,
  fillConversationButton,
  personItem,
  typingText,
} from "./render.js";

export class Conversations {
  /**
   * @param {object} options
   * @param {object} options.elements  roomList, dmList, log, emptyHint,
   *   convTitle, convMeta, leaveButton, loadOlder, typing, people,
   *   messageInput, sendButton
   * @param {import("./session.js").Session} options.session
   * @param {(name: string) => void} options.onPerson  a name in the people
   *   list was picked (to open a direct conversation)
   */
  constructor({ elements, session, onPerson }) {
    this.ui = elements;
    this.session = session;
    this.onPerson = onPerson;
    /** The open conversation (a Room or a DirectConversation), or null. */
    this.current = null;
    /** Every listed conversation, in the order they were added. */
    this.listed = new Set();
  }

  /** List a new conversation in the sidebar (rooms and DMs in their own list). */
  add(conv) {
    const { button, item } = conversationEntry(conv);
    conv.button = button;
    conv.item = item;
    button.addEventListener("click", () => this.select(conv, true));
    this.listed.add(conv);
    (conv.kind === "room" ? this.ui.roomList : this.ui.dmList).append(item);
    this.renderButton(conv);
  }

  /** Take a conversation off the sidebar; if it was open, open the first
   * room (else the first DM, else nothing). */
  remove(conv) {
    this.listed.delete(conv);
    conv.item.remove();
    if (this.current !== conv) return;
    const next = this.first("room") || this.first("dm");
    this.current = null;
    if (next) this.select(next);
    else this.render();
  }

  first(kind) {
    for (const conv of this.listed) if (conv.kind === kind) return conv;
    return null;
  }

  isOpen(conv) {
    return this.current === conv;
  }

  select(conv, focusInput = false) {
    const previous = this.current;
    this.current = conv;
    conv.unread = 0;
    if (previous && previous !== conv) this.renderButton(previous);
    this.renderButton(conv);
    this.render();
    if (focusInput) this.ui.messageInput.focus();
  }

  /** Something new arrived in ``conv``: follow it if it is open and the
   * reader was at the end (``stick``), else count it unread. */
  noteNew(conv, stick, countUnread = true) {
    if (this.current === conv) {
      if (stick) conv.log.scrollToEnd();
    } else if (countUnread) {
      conv.unread += 1;
      this.renderButton(conv);
    }
  }

  /** The line under the title (and "Load older") may have changed. */
  metaChanged(conv) {
    if (this.current === conv) this.renderMeta();
  }

  /** Who is in the room changed. */
  peopleChanged(conv) {
    if (this.current !== conv) return;
    this.renderMeta();
    this.renderPeople();
  }

  typingChanged(conv) {
    if (this.current === conv) this.renderTyping();
  }

  /** "Load older messages" is busy while a page is on its way. */
  setLoadingOlder(busy) {
    this.ui.loadOlder.disabled = busy;
  }

  /** Logged out: nothing listed, nothing open. */
  reset() {
    this.listed.clear();
    this.current = null;
    clear(this.ui.roomList);
    clear(this.ui.dmList);
    clear(this.ui.log);
    clear(this.ui.people);
  }

  // -- drawing ----------------------------------------------------------------

  renderButton(conv) {
    fillConversationButton(conv.button, conv, this.current === conv);
  }

  /** Draw the open conversation (or the "join a room" hint). */
  render() {
    const { ui } = this;
    const conv = this.current;
    clear(ui.log);
    ui.emptyHint.hidden = Boolean(conv);
    ui.messageInput.disabled = ui.sendButton.disabled = !conv;
    ui.leaveButton.hidden = !conv || conv.kind !== "room";
    if (!conv) {
      ui.convTitle.textContent = "No room yet";
      ui.convMeta.textContent = "";
      ui.loadOlder.hidden = true;
      ui.typing.textContent = "";
      clear(ui.people);
      return;
    }
    ui.convTitle.textContent = conversationTitle(conv);
    ui.messageInput.placeholder = `Message ${conversationTitle(conv)}`;
    ui.log.append(conv.log.element);
    this.renderMeta();
    this.renderPeople();
    this.renderTyping();
    conv.log.scrollToEnd();
  }

  renderMeta() {
    const conv = this.current;
    if (!conv) return;
    this.ui.convMeta.textContent = conversationMeta(conv);
    this.ui.loadOlder.hidden = !conv.hasOlder;
  }

  renderPeople() {
    clear(this.ui.people);
    const conv = this.current;
    if (!conv || conv.kind !== "room") return;
    for (const name of conv.members) {
      this.ui.people.append(personItem(name, this.session.isMe(name), this.onPerson));
    }
  }

  renderTyping() {
    const conv = this.current;
    this.ui.typing.textContent = typingText(conv && conv.kind === "room" ? [...conv.typing.keys()] : []);
  }
}
