// The conversations the sidebar lists (rooms and direct messages alike),
// which one is open, unread and mention counts, muting, and drawing the open
// one: its header (title, the line under it, the topic, Topic, Mute, Leave
// or Close), its MessageLog, who is typing, who is online. The rooms and direct-message modules own what is
// in a conversation and tell this one when something changed; it never
// talks to the server. Unread badges are redrawn at most once per frame,
// however many messages arrive.

import { clear } from "./dom.js";
import {
  conversationEntry,
  conversationMeta,
  conversationTitle,
  conversationTitleNodes,
  fillConversationButton,
  personItem,
  typingNodes,
} from "./render.js";

export class Conversations {
  /**
   * @param {object} options
   * @param {object} options.elements  roomList, dmList, log, emptyHint,
   *   convTitle, convMeta, leaveButton, muteButton, peopleButton, typing,
   *   people, messageInput, sendButton
   * @param {import("./session.js").Session} options.session
   * @param {import("./preferences.js").Preferences} options.prefs
   * @param {(name: string) => void} options.onPerson  a name in the people
   *   list was picked (to open a direct conversation)
   * @param {(conv: object) => void} options.onSelect  a conversation was
   *   opened (the phone layout closes its drawer)
   * @param {(conv: object, muted: boolean) => void} [options.onMute]  the
   *   open room was muted or unmuted (the account keeps it)
   */
  constructor({ elements, session, prefs, onPerson, onSelect, onMute = (conv, muted) => prefs.setMuted(conv.name, muted) }) {
    this.ui = elements;
    this.session = session;
    this.prefs = prefs;
    this.onPerson = onPerson;
    this.onSelect = onSelect;
    this.onMute = onMute;
    /** The open conversation (a Room or a DirectConversation), or null. */
    this.current = null;
    /** Every listed conversation, in the order they were added. */
    this.listed = new Set();
    /** Sidebar buttons to redraw at the next frame. */
    this.stale = new Set();
    this.frame = null;
    elements.muteButton.addEventListener("click", () => this.toggleMute());
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
    this.stale.delete(conv);
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
    conv.mentions = 0;
    if (previous && previous !== conv) this.renderButton(previous);
    this.renderButton(conv);
    this.render();
    this.onSelect(conv);
    if (focusInput) this.ui.messageInput.focus();
  }

  /** New messages from others arrived in ``conv`` ({seq, mention}):
   * counted unread (and mentions) unless it is open (its log shows them,
   * or says "new messages below"), or the server's counts already hold
   * them (up to ``conv.countedSeq``, set by state.js from the account's
   * state). */
  noteNew(conv, messages) {
    let unread = 0;
    let mentions = 0;
    for (const m of messages) {
      if (typeof m.seq === "number") {
        if (typeof conv.countedSeq === "number" && m.seq <= conv.countedSeq) continue;
        conv.countedSeq = m.seq;
      }
      unread += 1;
      if (m.mention) mentions += 1;
    }
    if (unread === 0 || this.current === conv) return;
    conv.unread += unread;
    conv.mentions = (conv.mentions || 0) + mentions;
    this.countsChanged(conv);
  }

  /** The counts of ``conv`` changed: its sidebar entry is redrawn at the
   * next frame. */
  countsChanged(conv) {
    if (!this.listed.has(conv)) return;
    this.stale.add(conv);
    if (this.frame === null) {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        for (const stale of this.stale) this.renderButton(stale);
        this.stale.clear();
      });
    }
  }

  /** The line under the title may have changed. */
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

  /** Mute or unmute the open room (for the account, on every device). */
  toggleMute() {
    const conv = this.current;
    if (!conv || conv.kind !== "room") return;
    this.onMute(conv, !this.prefs.isMuted(conv.name));
    this.renderButton(conv);
    this.renderMute();
  }

  /** The mute of ``conv`` changed elsewhere (another device). */
  muteChanged(conv) {
    this.countsChanged(conv);
    if (this.current === conv) this.renderMute();
  }

  /** The topic of ``conv`` changed. */
  topicChanged(conv) {
    if (this.current === conv) this.renderTopic();
  }

  isMuted(conv) {
    return conv.kind === "room" && this.prefs.isMuted(conv.name);
  }

  /** Logged out: nothing listed, nothing open. */
  reset() {
    this.listed.clear();
    this.stale.clear();
    this.current = null;
    clear(this.ui.roomList);
    clear(this.ui.dmList);
    clear(this.ui.log);
    clear(this.ui.people);
  }

  // -- drawing ----------------------------------------------------------------

  renderButton(conv) {
    fillConversationButton(conv.button, conv, this.current === conv, this.isMuted(conv));
  }

  /** Draw the open conversation (or the "join a room" hint). */
  render() {
    const { ui } = this;
    const conv = this.current;
    clear(ui.log);
    ui.emptyHint.hidden = Boolean(conv);
    ui.messageInput.disabled = ui.sendButton.disabled = !conv;
    const isRoom = Boolean(conv) && conv.kind === "room";
    ui.leaveButton.hidden = ui.peopleButton.hidden = ui.topicButton.hidden = !isRoom;
    ui.closeDmButton.hidden = !conv || isRoom;
    this.renderMute();
    this.renderTopic();
    if (!conv) {
      ui.convTitle.textContent = "No room yet";
      ui.convMeta.textContent = "";
      ui.typing.textContent = "";
      clear(ui.people);
      return;
    }
    ui.convTitle.replaceChildren(...conversationTitleNodes(conv));
    ui.messageInput.placeholder = `Message ${conversationTitle(conv)}`;
    ui.log.append(conv.log.element);
    conv.log.shown();
    this.renderMeta();
    this.renderPeople();
    this.renderTyping();
  }

  renderMeta() {
    const conv = this.current;
    if (conv) this.ui.convMeta.textContent = conversationMeta(conv);
  }

  renderTopic() {
    const conv = this.current;
    const topic = conv && conv.kind === "room" && conv.topic ? conv.topic : "";
    this.ui.convTopic.textContent = topic;
    this.ui.convTopic.hidden = !topic;
    if (topic) this.ui.convTopic.title = topic;
  }

  renderMute() {
    const conv = this.current;
    const button = this.ui.muteButton;
    button.hidden = !conv || conv.kind !== "room";
    button.setAttribute("aria-pressed", String(Boolean(conv) && this.isMuted(conv)));
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
    this.ui.typing.replaceChildren(...typingNodes(conv && conv.kind === "room" ? [...conv.typing.keys()] : []));
  }
}
