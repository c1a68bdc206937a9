// parkchat's browser client: log in with POST /login, then one WebSocket to
// /ws (docs/websocket.md) carries rooms, direct messages and presence.
// Everything from the server or from people is inserted with textContent
// (see dom.js and render.js): no innerHTML anywhere, and the page's CSP
// forbids inline script, so a message such as <img src=x onerror=...> is
// just text.
//
// This is the entry point: it creates each part once, hands every part the
// others it needs, routes the server's frames to their owners, and runs the
// session from login to logout. No module keeps state of its own at the top
// level; the layout is described in docs/browser.md.

import { AccountForms } from "./account.js";
import * as api from "./api.js";
import { ChatClient } from "./client.js";
import { Composer } from "./composer.js";
import { Conversations } from "./conversations.js";
import { DirectMessages } from "./direct.js";
import { Drawers } from "./drawer.js";
import { Attention } from "./notify.js";
import { Preferences } from "./preferences.js";
import { Rooms } from "./rooms.js";
import { Session } from "./session.js";
import { PageView, findElements } from "./view.js";

function main() {
  const ui = findElements(document);
  const view = new PageView(ui);
  const session = new Session(window.sessionStorage);
  const prefs = new Preferences(window.localStorage);
  const client = new ChatClient({ onState: connectionState });
  const drawers = new Drawers({
    drawers: [
      { button: ui.roomsButton, panel: ui.sidebar },
      { button: ui.peopleButton, panel: ui.peoplePanel },
    ],
    backdrop: ui.backdrop,
  });
  const conversations = new Conversations({
    elements: ui,
    session,
    prefs,
    // A name in the people list opens a DM (`direct` exists by the time
    // anyone can click).
    onPerson: (name) => direct.show(name),
    onSelect: (conv) => {
      drawers.close(false);
      session.saveCurrent(conv.kind, conv.name);
    },
  });
  const attention = new Attention({
    button: ui.notifyToggle,
    prefs,
    onOpen: (conv) => conversations.select(conv, true),
    onProblem: (text) => view.showAlert(text, undefined, { passing: true }),
  });
  const composer = new Composer({
    elements: { form: ui.messageForm, input: ui.messageInput },
    client,
    session,
    conversations,
    view,
  });
  const rooms = new Rooms({
    elements: {
      joinForm: ui.joinForm,
      roomInput: ui.roomInput,
      browse: ui.browseRooms,
      directory: ui.directory,
      directoryTitle: ui.directoryTitle,
    },
    client,
    session,
    conversations,
    composer,
    view,
    attention,
  });
  const direct = new DirectMessages({
    elements: { form: ui.dmForm, input: ui.dmInput },
    client,
    session,
    conversations,
    view,
    attention,
  });
  const account = new AccountForms({
    elements: ui,
    view,
    session,
    client,
    onLoggedIn: (me) => startSession(me, []),
  });

  // Every frame the server sends on /ws and the part that owns it, with the
  // request it answers ("ready" is a state change, "pong" stays in
  // connection.js). A new kind of frame is one line here.
  client.route({
    joined: (frame, what) => rooms.onJoined(frame, what),
    history: (frame, what) => rooms.onHistory(frame, what),
    who: (frame) => rooms.onWho(frame),
    message: (frame) => rooms.onMessage(frame),
    join: (frame) => rooms.onPresence(frame),
    userleave: (frame) => rooms.onPresence(frame),
    typing: (frame) => rooms.onTyping(frame),
    // TODO(#16): edit/delete of own messages: an "edited" route here, to
    // log.update(entry, {body, edited}) as onDeleted does with removeId.
    deleted: (frame) => rooms.onDeleted(frame),
    kicked: (frame) => rooms.onKicked(frame),
    room_list: (frame) => rooms.onRoomList(frame),
    chat: (frame) => direct.onChat(frame),
    offline_list: (frame) => direct.onOfflineList(frame),
    direct_history: (frame, what) => direct.onHistory(frame, what),
    ack: (frame) => composer.onAck(frame),
    error: (frame, what) => {
      composer.refused(frame);
      rooms.requestFailed(what);
      if (!direct.requestFailed(what, frame)) view.showError(frame);
    },
  });

  /** Logged in (or back after a reload, with the rooms, conversations and
   * the open one that this tab had). */
  function startSession(me, roomNames, dmNames = [], current = null) {
    session.begin(me);
    prefs.load(me.nickname);
    attention.render();
    view.signedIn(me.nickname);
    for (const name of roomNames) rooms.add(name);
    rooms.save();
    conversations.render();
    client.start(me.token);
    // Conversations open before a reload come back (their history loads
    // once the connection is ready).
    for (const name of dmNames) direct.add(name, { restored: true });
    const open =
      (current && current.kind === "room" && rooms.rooms.get(current.name)) ||
      (current && current.kind === "dm" && direct.dms.get(current.name.toLowerCase())) ||
      conversations.first("room");
    if (open) {
      conversations.select(open);
    } else {
      // Nothing to show yet: on a phone, the room list opens to pick one.
      drawers.showFor(ui.roomInput, ui.roomInput);
      rooms.focus();
    }
  }

  function logOut(message) {
    client.stop();
    session.end();
    prefs.unload();
    rooms.reset();
    direct.reset();
    composer.reset();
    conversations.reset();
    attention.reset();
    drawers.close(false);
    view.signedOut(message);
    conversations.render();
    account.signedOut();
  }

  function connectionState(name, detail = {}) {
    if (name === "connecting") {
      view.setStatus("Connecting…", { offline: true });
    } else if (name === "ready") {
      view.setStatus(`Connected as ${session.me.nickname}`);
      view.connectionBack();
      composer.connectionReady();
      rooms.connectionReady();
      direct.connectionReady();
    } else if (name === "waiting") {
      composer.connectionLost();
      view.setStatus(`Connection lost. Reconnecting in ${detail.seconds} s…`, { offline: true, canReconnect: true });
    } else if (name === "stopped") {
      composer.connectionLost();
      if (["unauthorized", "banned", "logged_out"].includes(detail.reason)) {
        logOut(detail.message);
      } else {
        view.setStatus("Disconnected", { offline: true, canReconnect: true });
        view.showConnectionAlert(detail.message || "Disconnected from the server.");
      }
    }
  }

  ui.logout.addEventListener("click", () => {
    if (session.me) api.revokeToken(session.me.token);
    logOut();
  });
  ui.passwordButton.addEventListener("click", () => account.openPasswordDialog());
  ui.reconnect.addEventListener("click", () => client.reconnectNow());
  ui.leaveButton.addEventListener("click", () => {
    const conv = conversations.current;
    if (conv && conv.kind === "room") rooms.leave(conv);
  });

  const saved = session.restore();
  if (saved) startSession(saved.me, saved.rooms, saved.dms, saved.current);
  else account.focus();
}

main();
