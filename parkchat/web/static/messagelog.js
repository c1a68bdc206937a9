// One conversation's messages: the entries the page knows (data) and the few
// of them that have DOM nodes (a window). Rooms, DMs and the composer change
// entries through the methods below at any rate the server sends; the DOM
// follows at most once per animation frame (requestAnimationFrame), in one
// batch, with at most one forced layout. So a burst of thousands of messages
// costs one small layout per frame, not one per message, and the page keeps
// at most WINDOW_MAX entries on screen however long the conversation gets:
//
// (New data waits for the next frame at least DATA_FRAME_MS after the last.)
//
// * following the end ("stuck", the usual case), only the newest WINDOW
//   (60) entries have nodes; older ones lose theirs as new ones come in;
// * scrolling back renders STEP (50) more entries above (or below) at a
//   time from memory, keeping the entries on screen in place, and drops
//   nodes at the far end beyond WINDOW_MAX (250);
// * reaching the top of what is in memory asks the owner for an older page
//   from the server (onReachTop); memory itself keeps the newest KEEP
//   (1,000) entries while following the end, so older ones come back that
//   way too.
//
// A search result far back in the conversation is shown "detached": memory
// holds the messages around it instead of the newest ones, scrolling down
// asks the owner for newer pages (onReachBottom) until it meets the live
// end again (attach), and "Back to the newest messages" asks the owner to
// start again from the newest page (onBackToEnd).
//
// Entries are plain objects, oldest first: stored messages ordered by id,
// our own messages waiting for their ack, notices, and runs of joins and
// leaves collapsed into one entry. render.js draws them.

import { el } from "./dom.js";
import { entryNode } from "./render.js";

/** Entries with nodes while following the end: a few screens' worth (a
 * burst replaces all of them in a frame, so their layout is the frame's
 * main cost). */
const WINDOW = 60;
/** Entries with nodes at most while scrolling back. */
const WINDOW_MAX = 250;
/** Entries rendered at a time when the reader nears an edge. */
const STEP = 50;
/** Entries kept in memory while following the end (trimmed back to this
 * once there are TRIM_SLACK more, so not once per message). */
const KEEP = 1000;
const TRIM_SLACK = 200;
/** How close to an edge (px) counts as near it. */
const EDGE_PX = 400;
/** How close to the bottom (px) counts as reading the newest. */
const END_PX = 48;
/** Messages arriving redraw at most this often (ms): each redraw costs a
 * layout, a paint and a commit whatever it adds, so a room at 100 messages
 * a second redraws 20 times a second, not 60, for 50 ms more latency at
 * most. The reader's own scrolling is drawn at every frame. */
const DATA_FRAME_MS = 50;

export class MessageLog {
  /**
   * @param {string} label  the accessible name of the log
   * @param {object} [options]
   * @param {() => void} [options.onReachTop]  the reader is at the oldest
   *   entry in memory: load an older page if there is one
   * @param {() => void} [options.onReachBottom]  detached, the reader is at
   *   the newest entry in memory: load a newer page
   * @param {() => void} [options.onBackToEnd]  detached, the reader asked
   *   for the newest messages
   * @param {() => void} [options.onAtEnd]  drawn while showing the newest
   *   messages (the conversation may count as read)
   */
  constructor(label, { onReachTop = () => {}, onReachBottom = () => {}, onBackToEnd = () => {}, onAtEnd = () => {} } = {}) {
    this.list = el("ol", { className: "messages" });
    this.scroller = el("div", { className: "log-scroller", attrs: { role: "log", "aria-label": label, tabindex: "0" } }, [
      this.list,
    ]);
    this.loadingNote = el("p", { className: "log-loading", text: "Loading older messages…", attrs: { role: "status" } });
    this.loadingNote.hidden = true;
    this.jump = el("button", { className: "jump-to-end", attrs: { type: "button" } });
    this.jump.hidden = true;
    /** What the conversation view shows: the scroller and its overlays. */
    this.element = el("div", { className: "log-frame" }, [this.scroller, this.loadingNote, this.jump]);
    this.onReachTop = onReachTop;
    this.onReachBottom = onReachBottom;
    this.onBackToEnd = onBackToEnd;
    this.onAtEnd = onAtEnd;

    /** Every entry in memory, oldest first. */
    this.entries = [];
    /** Stored id -> its entry. */
    this.byId = new Map();
    /** Entries [lo, hi) have nodes, in order, in this.list. */
    this.lo = 0;
    this.hi = 0;
    /** Following the end: new entries are drawn and scrolled to. */
    this.stuck = true;
    /** At the last frame the window reached the newest entry. */
    this.hiIsEnd = true;
    /** Messages that arrived below while the reader was scrolled back. */
    this.unseen = 0;
    /** Whether the server has messages older than the oldest entry (unknown
     * until a history page says). */
    this.hasOlder = undefined;
    this.loadingOlder = false;
    /** Memory holds messages around a search result, not the newest. */
    this.detached = false;
    this.loadingNewer = false;
    /** The entry to bring into view at the next frame (a search result). */
    this.target = null;
    /** Nodes of entries that left memory, to take off the page next frame. */
    this.dropped = [];
    this.frame = null;
    /** Holds new data back until DATA_FRAME_MS after the last redraw. */
    this.dataTimer = null;
    this.lastFlush = 0;
    this.userScrolled = false;
    this.nextKey = 1;
    this.scroller.addEventListener("scroll", () => {
      this.userScrolled = true;
      this.schedule();
    });
    this.jump.addEventListener("click", () => {
      if (this.detached) this.onBackToEnd();
      else this.jumpToEnd();
      this.scroller.focus();
    });
  }

  // -- data ---------------------------------------------------------------------

  /** Whether stored message ``id`` is in memory. */
  has(id) {
    return this.byId.has(id);
  }

  get size() {
    return this.entries.length;
  }

  /** The smallest stored id in memory (older pages are asked for before
   * it), or null. */
  get oldestId() {
    for (const entry of this.entries) if (entry.id !== null) return entry.id;
    return null;
  }

  /** A message, put in its place by its stored id (live, resumed or
   * history; one without an id goes at the end):
   * {id, username, body, timestamp, mine, mention}. Returns the entry, or
   * null if that id is already here. */
  add(message) {
    const stored = typeof message.id === "number";
    if (stored && this.byId.has(message.id)) return null;
    const entry = this.newEntry("message", { state: null, error: "", ...message, id: stored ? message.id : null });
    if (stored) this.byId.set(entry.id, entry);
    this.insertAt(stored ? this.placeFor(entry.id) : this.entries.length, [entry]);
    return entry;
  }

  /** An older page (oldest first, all older than what is here) above
   * everything. */
  prependOlder(messages) {
    const entries = [];
    for (const message of messages) {
      if (this.byId.has(message.id)) continue;
      const entry = this.newEntry("message", { state: null, error: "", ...message });
      this.byId.set(entry.id, entry);
      entries.push(entry);
    }
    if (entries.length > 0) this.insertAt(0, entries);
    return entries.length;
  }

  /** Our own message, shown at once until the server stores it. */
  appendPending(username, body) {
    const entry = this.newEntry("message", { id: null, username, body, timestamp: null, mine: true, mention: false, state: "pending", error: "" });
    this.insertAt(this.entries.length, [entry]);
    return entry;
  }

  /** A line from the page (e.g. "You joined lobby"), at the end; returns
   * its entry. */
  appendNotice(text, timestamp = null) {
    const entry = this.newEntry("notice", { id: null, text, timestamp });
    this.insertAt(this.entries.length, [entry]);
    return entry;
  }

  /** There is nothing older on the server: say so above everything. */
  reachedBeginning(text) {
    this.hasOlder = false;
    const first = this.entries[0];
    if (first && first.kind === "notice" && first.text === text) return;
    this.insertAt(0, [this.newEntry("notice", { id: null, text, timestamp: null })]);
  }

  /** Someone joined or left (``verb`` "join" or "leave"): a run of these
   * with nothing in between is one entry. */
  addPresence(name, verb, timestamp) {
    const last = this.entries[this.entries.length - 1];
    if (last && last.kind === "presence") {
      last.events.push({ name, verb });
      this.changed(last);
      return;
    }
    this.insertAt(this.entries.length, [this.newEntry("presence", { id: null, events: [{ name, verb }], timestamp })]);
  }

  /** Change an entry's fields (state, timestamp, error…) and redraw it. */
  update(entry, fields) {
    Object.assign(entry, fields);
    this.changed(entry);
  }

  /** A pending message of ours was stored as ``id``. */
  setId(entry, id) {
    entry.id = id;
    this.byId.set(id, entry);
    this.changed(entry);
  }

  /** The first entry that ``test`` accepts, newest first, or null. */
  findLast(test) {
    for (let i = this.entries.length - 1; i >= 0; i -= 1) if (test(this.entries[i])) return this.entries[i];
    return null;
  }

  /** Take an entry out. */
  remove(entry) {
    const index = this.entries.indexOf(entry);
    if (index < 0) return;
    this.entries.splice(index, 1);
    if (entry.id !== null) this.byId.delete(entry.id);
    if (entry.node) this.dropped.push(entry.node);
    entry.node = null;
    if (index < this.lo) this.lo -= 1;
    if (index < this.hi) this.hi -= 1;
    this.scheduleData();
  }

  /** Take the entry of stored message ``id`` out, if it is here. */
  removeId(id) {
    const entry = this.byId.get(id);
    if (entry) this.remove(entry);
  }

  /** Forget everything (the server starts the conversation afresh). */
  clear() {
    for (const entry of this.entries) if (entry.node) this.dropped.push(entry.node);
    this.entries = [];
    this.byId.clear();
    this.lo = this.hi = 0;
    this.unseen = 0;
    this.scheduleData();
  }

  /** Start again: every entry goes except our own messages still waiting
   * for the server; what comes next is added below them. */
  restart() {
    const waiting = this.entries.filter((e) => e.kind === "message" && e.id === null && e.state);
    for (const entry of this.entries) if (entry.node) this.dropped.push(entry.node);
    for (const entry of waiting) entry.node = null;
    this.entries = [];
    this.byId.clear();
    this.lo = this.hi = 0;
    this.unseen = 0;
    this.insertAt(0, waiting);
  }

  /** Show ``messages`` (stored, oldest first: the page around a search
   * result) instead of everything in memory, detached from the newest, and
   * bring the one with id ``targetId`` into view. */
  showAround(messages, targetId) {
    for (const entry of this.entries) if (entry.node) this.dropped.push(entry.node);
    this.entries = [];
    this.byId.clear();
    this.lo = this.hi = 0;
    this.unseen = 0;
    this.detached = true;
    this.stuck = false;
    this.hasOlder = true;
    this.loadingNewer = false;
    for (const message of messages) this.add(message);
    this.reveal(targetId);
  }

  /** Newer messages reached the newest: follow the end again. */
  attach() {
    this.detached = false;
    this.loadingNewer = false;
    this.scheduleData();
  }

  /** Start again, empty, following the end (the owner loads the newest page). */
  restartAtEnd() {
    this.clear();
    this.detached = false;
    this.loadingNewer = false;
    this.hasOlder = undefined;
    this.jumpToEnd();
  }

  /** ``count`` messages arrived live while detached (not in memory). */
  noteUnseen(count) {
    this.unseen += count;
    this.scheduleData();
  }

  setLoadingNewer(busy) {
    this.loadingNewer = busy;
  }

  /** Bring stored message ``id`` into view (marked as the one looked for). */
  reveal(id) {
    const entry = this.byId.get(id);
    if (!entry) return;
    const old = this.findLast((e) => e.target);
    if (old && old !== entry) this.update(old, { target: false });
    this.update(entry, { target: true });
    this.target = entry;
    this.stuck = false;
    this.schedule();
  }

  /** Showing the newest messages, following them. */
  get atEnd() {
    return this.stuck && !this.detached;
  }

  setLoadingOlder(busy) {
    this.loadingOlder = busy;
    this.loadingNote.hidden = !busy;
  }

  // -- view ---------------------------------------------------------------------

  /** Follow the end again (sending a message, "new messages below"). */
  jumpToEnd() {
    this.stuck = true;
    this.unseen = 0;
    this.schedule();
  }

  /** The log was put on the page (its conversation was opened): draw the
   * newest entries now, without waiting for a frame. */
  shown() {
    this.stuck = true;
    this.unseen = 0;
    this.userScrolled = false;
    this.flush();
  }

  // -- internals ----------------------------------------------------------------

  newEntry(kind, fields) {
    return { key: this.nextKey++, kind, node: null, dirty: false, ...fields };
  }

  /** Where a stored message with ``id`` goes: after the last entry with a
   * smaller id (at the very end if it is the newest), else before the first
   * stored one. Messages come in order, so this looks at a few entries. */
  placeFor(id) {
    let firstStored = -1;
    for (let i = this.entries.length - 1; i >= 0; i -= 1) {
      const other = this.entries[i].id;
      if (other === null) continue;
      if (other < id) return firstStored === -1 ? this.entries.length : i + 1;
      firstStored = i;
    }
    return firstStored === -1 ? this.entries.length : firstStored;
  }

  insertAt(index, entries) {
    const at = this.entries.length;
    this.entries.splice(index, 0, ...entries);
    const count = entries.length;
    if (index < this.lo || (index === this.lo && this.lo === this.hi && index > 0)) {
      this.lo += count;
      this.hi += count;
    } else if (index < this.hi || (index === this.lo && this.lo < this.hi)) {
      // Inside the window (or just above its first entry): drawn next frame.
      this.hi += count;
    }
    if (index === at && !this.stuck) this.unseen += this.countMessages(index, index + count);
    this.trim();
    this.scheduleData();
  }

  /** Following the end, memory keeps the newest KEEP entries: older ones
   * are asked for again when the reader scrolls back to them. */
  trim() {
    const extra = this.entries.length - KEEP;
    // (A log that is not on the page follows the end when it is shown.)
    if (extra < TRIM_SLACK || (!this.stuck && this.scroller.isConnected)) return;
    for (const entry of this.entries.splice(0, extra)) {
      if (entry.id !== null) this.byId.delete(entry.id);
      if (entry.node) this.dropped.push(entry.node);
      entry.node = null;
    }
    this.lo = Math.max(0, this.lo - extra);
    this.hi = Math.max(0, this.hi - extra);
    this.hasOlder = true;
  }

  /** Messages from others among entries [from, to). */
  countMessages(from, to) {
    let count = 0;
    for (let i = from; i < to; i += 1) if (this.entries[i].kind === "message" && !this.entries[i].mine) count += 1;
    return count;
  }

  changed(entry) {
    entry.dirty = true;
    this.scheduleData();
  }

  /** Redraw at the next animation frame. */
  schedule() {
    clearTimeout(this.dataTimer);
    this.dataTimer = null;
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Redraw for new or changed data: at the next frame, but not sooner than
   * DATA_FRAME_MS after the last redraw. */
  scheduleData() {
    if (this.frame !== null || this.dataTimer !== null) return;
    const wait = this.lastFlush + DATA_FRAME_MS - performance.now();
    if (wait <= 0) {
      this.schedule();
      return;
    }
    this.dataTimer = setTimeout(() => {
      this.dataTimer = null;
      this.schedule();
    }, wait);
  }

  /** Bring the DOM up to date with the entries: once per frame. */
  flush() {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    clearTimeout(this.dataTimer);
    this.dataTimer = null;
    this.lastFlush = performance.now();
    for (const node of this.dropped) node.remove();
    this.dropped = [];
    if (!this.scroller.isConnected) return; // drawn again when shown
    const sc = this.scroller;
    const n = this.entries.length;
    let { lo, hi } = this;
    let atTop = false;
    if (this.userScrolled) {
      // What the reader did: layout is clean here (nothing was written yet).
      this.userScrolled = false;
      const below = sc.scrollHeight - sc.scrollTop - sc.clientHeight;
      const wasStuck = this.stuck;
      this.stuck = below < END_PX && this.hiIsEnd && !this.detached;
      // What came in since the last frame, below the window, is unseen.
      if (wasStuck && !this.stuck) this.unseen += this.countMessages(this.hi, n);
      if (!this.stuck && sc.scrollTop < EDGE_PX) {
        if (lo > 0) {
          lo = Math.max(0, lo - STEP);
          hi = Math.min(hi, lo + WINDOW_MAX);
        } else {
          atTop = true;
        }
      } else if (!this.stuck && below < EDGE_PX && hi < n) {
        hi = Math.min(n, hi + STEP);
        lo = Math.max(lo, hi - WINDOW_MAX);
      } else if (this.detached && below < EDGE_PX && hi === n && !this.loadingNewer) {
        this.onReachBottom();
      }
    }
    const target = this.target;
    this.target = null;
    if (target) {
      const index = this.entries.indexOf(target);
      if (index >= 0) {
        this.stuck = false;
        lo = Math.max(0, index - STEP);
        hi = Math.min(n, index + STEP);
      }
    }
    if (this.stuck) {
      hi = n;
      lo = Math.max(0, n - WINDOW);
      this.unseen = 0;
    } else if (hi - lo > WINDOW_MAX) {
      hi = lo + WINDOW_MAX; // an older page came in above: drop the bottom
    }
    this.render(lo, hi);
    if (this.stuck) sc.scrollTop = sc.scrollHeight;
    if (target && target.node) target.node.scrollIntoView({ block: "center" });
    this.hiIsEnd = this.hi === n;
    this.showJump();
    if (this.stuck && !this.detached) this.onAtEnd();
    // The oldest entry in memory is (nearly) on screen: more from the server.
    if ((atTop || (this.lo === 0 && sc.scrollTop < EDGE_PX)) && this.hasOlder && !this.loadingOlder) this.onReachTop();
  }

  /** Give entries [lo, hi) nodes, in order, and no other entry a node,
   * keeping what the reader sees in place unless following the end. */
  render(lo, hi) {
    const { entries, list, scroller } = this;
    const oldLo = this.lo;
    const oldHi = Math.min(this.hi, entries.length);
    // An entry drawn before and after: it stays where it is on screen.
    let anchor = null;
    let anchorTop = 0;
    if (!this.stuck) {
      for (let i = Math.max(oldLo, lo); i < Math.min(oldHi, hi); i += 1) {
        if (entries[i].node && !entries[i].dirty) {
          anchor = entries[i].node;
          anchorTop = anchor.offsetTop - scroller.scrollTop;
          break;
        }
      }
    }
    for (let i = oldLo; i < oldHi; i += 1) {
      if (i >= lo && i < hi) continue;
      const entry = entries[i];
      if (entry.node) entry.node.remove();
      entry.node = null;
    }
    // New nodes go in runs, each run in one fragment before the next
    // entry that already has its node.
    let run = null;
    for (let i = lo; i < hi; i += 1) {
      const entry = entries[i];
      if (entry.node && entry.dirty) {
        const fresh = entryNode(entry);
        entry.node.replaceWith(fresh);
        entry.node = fresh;
      }
      entry.dirty = false;
      if (entry.node) {
        if (run) list.insertBefore(run, entry.node);
        run = null;
        continue;
      }
      entry.node = entryNode(entry);
      if (!run) run = document.createDocumentFragment();
      run.append(entry.node);
    }
    if (run) list.append(run);
    this.lo = lo;
    this.hi = hi;
    if (anchor && anchor.isConnected) scroller.scrollTop = anchor.offsetTop - anchorTop;
  }

  showJump() {
    const show = this.detached || (!this.stuck && (this.unseen > 0 || !this.hiIsEnd));
    this.jump.hidden = !show;
    if (!show) return;
    const text =
      this.unseen > 0
        ? `${this.unseen} new message${this.unseen === 1 ? "" : "s"} below`
        : "Back to the newest messages";
    if (this.jump.textContent !== text) this.jump.textContent = text;
  }
}
