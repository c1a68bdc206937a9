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
import { MessageEditing } from "./editing.js";
import { Attention } from "./notify.js";
import { Preferences } from "./preferences.js";
import { Rooms } from "./rooms.js";
import { Search } from "./search.js";
import { Session } from "./session.js";
import { AccountState } from "./state.js";
import { PageView, findElements } from "./view.js";

/** A remembered login's token is renewed this long before it expires (ms). */
const RENEW_BEFORE_MS = 5 * 60 * 1000;
/** After a failed renewal (the network), try again after this long (ms). */
const RENEW_RETRY_MS = 60 * 1000;
/** The longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function main() {
  const ui = findElements(document);
  const view = new PageView(ui);
  const session = new Session(window.sessionStorage, window.localStorage);
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
      state.maybeRead(conv);
    },
    onMute: (conv, muted) => state.setMuted(conv, muted),
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
      topicButton: ui.topicButton,
      topicDialog: ui.topicDialog,
      topicForm: ui.topicForm,
      topicInput: ui.topicInput,
      topicCancel: ui.topicCancel,
    },
    client,
    session,
    conversations,
    composer,
    view,
    attention,
    onAtEnd: (conv) => state.maybeRead(conv),
  });
  const direct = new DirectMessages({
    elements: { form: ui.dmForm, input: ui.dmInput },
    client,
    session,
    conversations,
    view,
    attention,
    onAtEnd: (conv) => state.maybeRead(conv),
    keepsState: () => state.supported,
  });
  const state = new AccountState({
    client,
    rooms,
    direct,
    conversations,
    prefs,
    attention,
    onSettled: () => land(),
  });
  const editing = new MessageEditing({
    container: ui.log,
    dialog: {
      dialog: ui.deleteDialog,
      form: ui.deleteForm,
      preview: ui.deletePreview,
      confirm: ui.deleteConfirm,
      cancel: ui.deleteCancel,
    },
    client,
    conversations,
    view,
  });
  const search = new Search({
    elements: {
      form: ui.searchForm,
      input: ui.searchInput,
      title: ui.searchTitle,
      results: ui.searchResults,
      more: ui.searchMore,
      close: ui.searchClose,
    },
    client,
    view,
    onOpen: (result) => {
      if (typeof result.room === "string") rooms.showMessage(result.room, result);
      else direct.showMessage(result.with, result);
    },
  });
  const account = new AccountForms({
    elements: ui,
    view,
    session,
    client,
    onLoggedIn: (login) => startSession(login),
  });
  /** The conversation to open once the account's rooms are known. */
  let landing = null;
  /** Renews a remembered login's token before it expires. */
  let renewTimer = null;

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
    deleted: (frame) => rooms.onDeleted(frame),
    kicked: (frame) => rooms.onKicked(frame),
    room_list: (frame) => rooms.onRoomList(frame),
    edited: (frame) => rooms.onEdited(frame),
    topic: (frame) => rooms.onTopic(frame),
    chat: (frame) => direct.onChat(frame),
    offline_list: (frame) => direct.onOfflineList(frame),
    direct_history: (frame, what) => direct.onHistory(frame, what),
    state: (frame) => state.onState(frame),
    room_state: (frame) => state.onRoomState(frame),
    direct_state: (frame) => state.onDirectState(frame),
    search: (frame, what) => search.onResults(frame, what),
    // A message's ack is the composer's; an edit's, a deletion's or a
    // topic's answers the request it was for.
    ack: (frame, what) => (what ? editing.onAck(frame, what) : composer.onAck(frame)),
    error: (frame, what) => {
      composer.refused(frame);
      rooms.requestFailed(what);
      editing.requestFailed(what);
      if (!direct.requestFailed(what, frame)) view.showError(frame);
    },
  });

  /** Logged in (``login``: the answer of POST /login or /refresh), or back
   * after a reload with the rooms, conversations and the open one that
   * this tab had. The account's rooms and conversations come from the
   * server ("state") and the one open last is opened then. */
  function startSession(login, roomNames = [], dmNames = [], current = null) {
    const me = { token: login.token, nickname: login.nickname, user_id: login.user_id, expires_at: login.expires_at };
    if (typeof login.refresh_token === "string") {
      session.saveRefresh(me.nickname, login.refresh_token, login.refresh_expires_in);
    }
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
    landing = current || session.lastOpen(me.nickname);
    const open =
      (landing && landing.kind === "room" && rooms.rooms.get(landing.name)) ||
      (landing && landing.kind === "dm" && direct.dms.get(landing.name.toLowerCase())) ||
      conversations.first("room");
    if (open) conversations.select(open);
    scheduleRenewal();
  }

  /** The account's rooms are known (or the server keeps none): open the
   * conversation that was open last, else the first room; with nothing to
   * open, the room list (a drawer on a phone) asks for one. */
  function land() {
    if (!session.me || conversations.current) return;
    const open =
      (landing && landing.kind === "room" && rooms.rooms.get(landing.name)) ||
      (landing && landing.kind === "dm" && direct.dms.get(landing.name.toLowerCase())) ||
      conversations.first("room") ||
      conversations.first("dm");
    if (open) {
      conversations.select(open);
    } else {
      drawers.showFor(ui.roomInput, ui.roomInput);
      rooms.focus();
    }
  }

  /** POST /refresh with the remembered refresh token, one tab at a time
   * (two tabs spending the same token would look like a stolen copy and
   * revoke the login): inside the lock the latest token is read again,
   * and the next one kept. */
  async function refreshLogin() {
    const run = async () => {
      const saved = session.remembered();
      if (!saved) return { status: 401, data: null };
      const answer = await api.refresh(saved.refresh_token);
      const { status, data } = answer;
      if (status === 200 && data && typeof data.token === "string" && typeof data.refresh_token === "string") {
        session.saveRefresh(saved.nickname, data.refresh_token, data.refresh_expires_in);
      } else if (status === 400 || status === 401 || status === 403) {
        session.forgetRefresh();
      }
      return answer;
    };
    return navigator.locks ? navigator.locks.request("parkchat.refresh", run) : run();
  }

  /** Renew the token of a remembered login before it expires. */
  function scheduleRenewal() {
    clearTimeout(renewTimer);
    renewTimer = null;
    const me = session.me;
    if (!me || !session.remembered()) return;
    const wait = Date.parse(me.expires_at) - Date.now() - RENEW_BEFORE_MS;
    renewTimer = setTimeout(() => renew(me), Math.min(MAX_TIMER_MS, Math.max(1000, wait || 0)));
  }

  /** A fresh token for ``me``; true if it was renewed. */
  async function renew(me) {
    renewTimer = null;
    try {
      const { status, data } = await refreshLogin();
      if (status === 200 && session.renew(me, data.token, data.expires_at)) {
        client.setToken(data.token);
        scheduleRenewal();
        return true;
      }
      if (status >= 500 && session.me === me) renewTimer = setTimeout(() => renew(me), RENEW_RETRY_MS);
    } catch {
      // Offline: try again later (the token may still have a while to go).
      if (session.me === me) renewTimer = setTimeout(() => renew(me), RENEW_RETRY_MS);
    }
    return false;
  }

  /** A new tab (or the browser opened again) with a remembered login. */
  async function resumeLogin() {
    view.setStatus("Signing in…", { offline: true });
    try {
      const { status, data } = await refreshLogin();
      if (status === 200 && data && typeof data.token === "string") {
        startSession(data);
        return;
      }
      view.setStatus("Not connected", { offline: true });
      if (status === 401) view.showAlert("Your saved login has ended: please log in again.", undefined, { passing: true });
    } catch (error) {
      view.setStatus("Not connected", { offline: true });
      view.showAlert("Could not reach the server. Check your connection and try again.", String(error));
    }
    account.focus();
  }

  function logOut(message) {
    clearTimeout(renewTimer);
    renewTimer = null;
    landing = null;
    client.stop();
    session.end();
    prefs.unload();
    state.reset();
    rooms.reset();
    direct.reset();
    composer.reset();
    conversations.reset();
    attention.reset();
    search.reset();
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
      // Rooms are joined once the account's state says which.
      state.connectionReady();
      direct.connectionReady();
    } else if (name === "waiting") {
      composer.connectionLost();
      rooms.connectionLost();
      view.setStatus(`Connection lost. Reconnecting in ${detail.seconds} s…`, { offline: true, canReconnect: true });
    } else if (name === "stopped") {
      composer.connectionLost();
      rooms.connectionLost();
      if (detail.reason === "unauthorized" && session.remembered()) {
        // The token expired (a computer that slept): renew it and go on.
        const me = session.me;
        renew(me).then((renewed) => {
          if (renewed) client.reconnectNow();
          else if (session.me === me) logOut(detail.message);
        });
      } else if (["unauthorized", "banned", "logged_out"].includes(detail.reason)) {
        logOut(detail.message);
      } else {
        view.setStatus("Disconnected", { offline: true, canReconnect: true });
        view.showConnectionAlert(detail.message || "Disconnected from the server.");
      }
    }
  }

  ui.logout.addEventListener("click", () => {
    const saved = session.remembered();
    if (session.me) api.revokeToken(session.me.token, saved ? saved.refresh_token : null);
    session.announceLogout();
    logOut();
  });
  // Logging out in one tab logs out the others of this browser.
  window.addEventListener("storage", (event) => {
    if (!session.me || !session.isLogoutEvent(event)) return;
    api.revokeToken(session.me.token);
    logOut("You logged out in another tab.");
  });
  ui.closeDmButton.addEventListener("click", () => {
    const conv = conversations.current;
    if (conv && conv.kind === "dm") direct.close(conv);
  });
  ui.passwordButton.addEventListener("click", () => account.openPasswordDialog());
  ui.reconnect.addEventListener("click", () => client.reconnectNow());
  ui.leaveButton.addEventListener("click", () => {
    const conv = conversations.current;
    if (conv && conv.kind === "room") rooms.leave(conv);
  });

  const saved = session.restore();
  if (saved) startSession(saved.me, saved.rooms, saved.dms, saved.current);
  else if (session.remembered()) resumeLogin();
  else account.focus();
}

main();
