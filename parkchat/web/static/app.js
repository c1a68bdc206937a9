// parkchat's browser client: log in with POST /login, then one WebSocket to
// /ws (docs/websocket.md) carries rooms, direct messages and presence.
// Everything from the server or from people is inserted with textContent
// (see dom.js): no innerHTML anywhere, and the page's CSP forbids inline
// script, so a message such as <img src=x onerror=...> is just text.

import { ChatConnection } from "./connection.js";
import { clear, el, localDateTime, localTime } from "./dom.js";

const HISTORY_PAGE = 50;
const TYPING_SEND_EVERY_MS = 2000;
const TYPING_SHOW_MS = 4000;
const SESSION_KEY = "parkchat.session";
const ROOMS_KEY = "parkchat.rooms";
const DMS_KEY = "parkchat.dms";

const $ = (id) => document.getElementById(id);

const ui = {
  status: $("status"),
  reconnect: $("reconnect"),
  whoami: $("whoami"),
  logout: $("logout"),
  passwordButton: $("password-button"),
  passwordDialog: $("password-dialog"),
  passwordForm: $("password-form"),
  currentPassword: $("current-password"),
  newPassword: $("new-password"),
  repeatPassword: $("repeat-password"),
  passwordError: $("password-error"),
  passwordSave: $("password-save"),
  passwordCancel: $("password-cancel"),
  alert: $("alert"),
  alertText: $("alert-text"),
  alertClose: $("alert-close"),
  loginView: $("login-view"),
  loginForm: $("login-form"),
  nickname: $("nickname"),
  password: $("password"),
  loginButton: $("login-button"),
  registerButton: $("register-button"),
  chatView: $("chat-view"),
  joinForm: $("join-form"),
  roomInput: $("room-input"),
  roomList: $("room-list"),
  browseRooms: $("browse-rooms"),
  directory: $("directory"),
  directoryTitle: $("directory-title"),
  dmForm: $("dm-form"),
  dmInput: $("dm-input"),
  dmList: $("dm-list"),
  convTitle: $("conv-title"),
  convMeta: $("conv-meta"),
  leaveButton: $("leave-button"),
  loadOlder: $("load-older"),
  log: $("log"),
  emptyHint: $("empty-hint"),
  typing: $("typing"),
  messageForm: $("message-form"),
  messageInput: $("message-input"),
  sendButton: $("send-button"),
  people: $("people"),
};

/** Friendly words for the server's error codes (docs/websocket.md, Errors). */
const ERROR_TEXT = {
  rate_limited: "You are sending messages too fast. Wait a moment, then try again.",
  content_too_long: "That message is too long and was not sent.",
  invalid_content: "That message cannot be sent (empty, or it contains control characters).",
  banned: "This account is banned.",
  invalid_room: "That is not a valid room name.",
  not_in_room: "You are not in that room.",
  unknown_recipient: "There is no user by that name.",
  busy: "The server is busy. Try again in a moment.",
  storage_failed: "The server could not store that message, so it was not sent.",
  too_many_connections: "Too many open connections for this account.",
  unauthorized: "Your session has expired: please log in again.",
  invalid_request: "The server did not understand a request.",
};

const state = {
  me: null,
  conn: null,
  rooms: new Map(),
  dms: new Map(),
  current: null,
  pending: new Map(),
  requests: new Map(),
  generation: 0,
  lastTypingSent: 0,
};

// -- alerts and status -------------------------------------------------------

function showAlert(text, detail, { good = false } = {}) {
  ui.alertText.textContent = detail && detail !== text ? `${text} (${detail})` : text;
  ui.alert.classList.toggle("good", good);
  ui.alert.hidden = false;
}

function hideAlert() {
  ui.alert.hidden = true;
  ui.alertText.textContent = "";
}

function errorText(frame) {
  return ERROR_TEXT[frame.code] || "The server refused a request.";
}

function setStatus(text, { offline = false, canReconnect = false } = {}) {
  ui.status.textContent = text;
  ui.status.classList.toggle("offline", offline);
  ui.reconnect.hidden = !canReconnect;
}

// -- HTTP: register and log in -------------------------------------------------

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, data };
}

// Logging out asks the server to forget the token: otherwise it would keep
// working until it expires for anyone who copied it. The page logs out
// whether or not the request gets through.
function revokeToken(token) {
  fetch("/logout", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    credentials: "same-origin",
    cache: "no-store",
    keepalive: true,
  }).catch(() => {});
}

function httpError(status, data, fallback) {
  const message = data && typeof data.message === "string" ? data.message : "";
  if (status === 401) return "Wrong nickname or password.";
  if (status === 403) return "This account is banned.";
  if (status === 409) return "That nickname is already taken.";
  if (status === 429) return "Too many attempts. Wait a little, then try again.";
  return message ? `${fallback}: ${message}` : `${fallback} (HTTP ${status}).`;
}

function credentials() {
  return { nickname: ui.nickname.value.trim(), password: ui.password.value };
}

async function withBusyForm(action) {
  ui.loginButton.disabled = ui.registerButton.disabled = true;
  try {
    await action();
  } catch (error) {
    showAlert("Could not reach the server. Check your connection and try again.", String(error));
  } finally {
    ui.loginButton.disabled = ui.registerButton.disabled = false;
  }
}

async function logIn() {
  const { nickname, password } = credentials();
  if (!nickname || !password) {
    showAlert("Enter a nickname and a password.");
    (nickname ? ui.password : ui.nickname).focus();
    return;
  }
  const { status, data } = await postJson("/login", { nickname, password });
  if (status !== 200 || !data || typeof data.token !== "string") {
    showAlert(httpError(status, data, "Login failed"));
    ui.password.select();
    return;
  }
  hideAlert();
  ui.password.value = "";
  startSession(
    { token: data.token, nickname: data.nickname, user_id: data.user_id, expires_at: data.expires_at },
    [],
  );
}

async function register() {
  const { nickname, password } = credentials();
  if (!nickname || !password) {
    showAlert("Pick a nickname and a password to register.");
    (nickname ? ui.password : ui.nickname).focus();
    return;
  }
  const { status, data } = await postJson("/register", { nickname, password });
  if (status !== 201) {
    showAlert(httpError(status, data, "Registration failed"));
    return;
  }
  await logIn();
}

// -- password --------------------------------------------------------------------

function basicAuth(nickname, password) {
  const bytes = new TextEncoder().encode(`${nickname}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

function openPasswordDialog() {
  ui.passwordForm.reset();
  ui.passwordError.textContent = "";
  ui.passwordDialog.showModal();
  ui.currentPassword.focus();
}

/** POST /password with the current password (Basic), then log in with the
 * new one: the change revokes every token issued until now, this window's
 * included, and the next reconnect needs a fresh one. */
async function changePassword() {
  const me = state.me;
  const current = ui.currentPassword.value;
  const fresh = ui.newPassword.value;
  if (!me) return;
  if (!current || !fresh) {
    ui.passwordError.textContent = "Enter your current password and a new one.";
    return;
  }
  if (fresh !== ui.repeatPassword.value) {
    ui.passwordError.textContent = "The new passwords do not match.";
    ui.repeatPassword.select();
    return;
  }
  ui.passwordSave.disabled = true;
  try {
    const response = await fetch("/password", {
      method: "POST",
      headers: { Authorization: basicAuth(me.nickname, current), "Content-Type": "application/json" },
      body: JSON.stringify({ new_password: fresh }),
      credentials: "omit",
      cache: "no-store",
    });
    if (response.status !== 200) {
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = null;
      }
      ui.passwordError.textContent =
        response.status === 401 ? "That is not your current password." : httpError(response.status, data, "Not changed");
      return;
    }
    const { status, data } = await postJson("/login", { nickname: me.nickname, password: fresh });
    if (status === 200 && data && typeof data.token === "string" && state.me === me) {
      me.token = data.token;
      me.expires_at = data.expires_at;
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(me));
      if (state.conn) state.conn.token = data.token;
    }
    ui.passwordDialog.close();
    showAlert("Your password was changed.", undefined, { good: true });
  } catch (error) {
    ui.passwordError.textContent = `Could not reach the server (${error}).`;
  } finally {
    ui.passwordSave.disabled = false;
  }
}

// -- session -----------------------------------------------------------------

function saveRooms() {
  const names = [...state.rooms.keys()];
  sessionStorage.setItem(ROOMS_KEY, JSON.stringify(names));
}

function saveDms() {
  const names = [...state.dms.values()].map((dm) => dm.name);
  sessionStorage.setItem(DMS_KEY, JSON.stringify(names));
}

function startSession(me, roomNames, dmNames = []) {
  state.me = me;
  // The token lives in this tab's sessionStorage only (gone when the tab
  // closes, never in a URL or a cookie) so that reloading keeps you in.
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(me));
  ui.loginView.hidden = true;
  ui.chatView.hidden = false;
  ui.logout.hidden = false;
  ui.passwordButton.hidden = false;
  ui.whoami.hidden = false;
  ui.whoami.textContent = `Signed in as ${me.nickname}`;
  for (const name of roomNames) addRoom(name);
  saveRooms();
  renderCurrent();
  state.conn = new ChatConnection({ token: me.token, onFrame: handleFrame, onState: connectionState });
  state.conn.start();
  // Conversations open before a reload come back (their history loads once
  // the connection is ready).
  for (const name of dmNames) addDm(name);
  ui.roomInput.focus();
}

function logOut(message) {
  if (state.conn) state.conn.stop();
  state.conn = null;
  state.me = null;
  state.rooms.clear();
  state.dms.clear();
  state.pending.clear();
  state.requests.clear();
  state.current = null;
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(ROOMS_KEY);
  sessionStorage.removeItem(DMS_KEY);
  clear(ui.roomList);
  clear(ui.dmList);
  clear(ui.directory);
  ui.directory.hidden = ui.directoryTitle.hidden = true;
  clear(ui.log);
  clear(ui.people);
  ui.chatView.hidden = true;
  ui.loginView.hidden = false;
  ui.logout.hidden = true;
  ui.passwordButton.hidden = true;
  if (ui.passwordDialog.open) ui.passwordDialog.close();
  ui.whoami.hidden = true;
  ui.whoami.textContent = "";
  setStatus("Not connected", { offline: true });
  if (message) showAlert(message);
  else hideAlert();
  renderCurrent();
  ui.nickname.focus();
}

function restoreSession() {
  let me = null;
  let rooms = [];
  let dms = [];
  try {
    me = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    rooms = JSON.parse(sessionStorage.getItem(ROOMS_KEY) || "[]");
    dms = JSON.parse(sessionStorage.getItem(DMS_KEY) || "[]");
  } catch {
    me = null;
  }
  if (!me || typeof me.token !== "string" || !(Date.parse(me.expires_at) > Date.now())) {
    sessionStorage.removeItem(SESSION_KEY);
    ui.nickname.focus();
    return;
  }
  const names = (list) => (Array.isArray(list) ? list.filter((n) => typeof n === "string") : []);
  startSession(me, names(rooms), names(dms));
}

// -- the connection ------------------------------------------------------------

function connectionState(name, detail = {}) {
  if (name === "connecting") {
    setStatus("Connecting…", { offline: true });
  } else if (name === "ready") {
    setStatus(`Connected as ${state.me.nickname}`);
    hideAlertIfConnectionProblem();
    onReady();
  } else if (name === "waiting") {
    markPendingUnconfirmed();
    setStatus(`Connection lost. Reconnecting in ${detail.seconds} s…`, { offline: true, canReconnect: true });
  } else if (name === "stopped") {
    markPendingUnconfirmed();
    if (["unauthorized", "banned", "logged_out"].includes(detail.reason)) {
      logOut(detail.message);
    } else {
      setStatus("Disconnected", { offline: true, canReconnect: true });
      showAlert(detail.message || "Disconnected from the server.");
      connectionAlert = true;
    }
  }
}

let connectionAlert = false;
function hideAlertIfConnectionProblem() {
  if (connectionAlert) hideAlert();
  connectionAlert = false;
}

function onReady() {
  state.generation += 1;
  // Unconfirmed direct messages are marked failed; one that was stored after
  // all comes back with the conversation's history and replaces its copy.
  for (const [id, pending] of state.pending) {
    if (pending.conv.kind === "dm") {
      state.pending.delete(id);
      markFailed(pending.li, "the connection was lost before the server confirmed it");
    }
  }
  for (const room of state.rooms.values()) sendJoin(room);
  request({ type: "get_offline" }, { kind: "offline" });
  // What was said while we were away is stored: fill the open conversations.
  for (const dm of state.dms.values()) loadDirectHistory(dm);
}

/** Send a frame with a fresh client id and remember what it was for. */
function request(frame, what) {
  if (!state.conn) return null;
  const id = state.conn.newId(what.kind.slice(0, 3));
  frame.id = id;
  if (!state.conn.send(frame)) return null;
  state.requests.set(id, what);
  return id;
}

function handleFrame(frame) {
  const what = frame.id !== undefined ? state.requests.get(frame.id) : undefined;
  // A resuming join is answered twice: "joined", then "history".
  const more = frame.type === "ack" || (frame.type === "joined" && what && what.resume);
  if (what && !more) state.requests.delete(frame.id);
  switch (frame.type) {
    case "ready":
      break;
    case "joined":
      onJoined(frame, what);
      break;
    case "history":
      onHistory(frame, what);
      break;
    case "who":
      onWho(frame);
      break;
    case "message":
      onRoomMessage(frame);
      break;
    case "join":
    case "userleave":
      onPresence(frame);
      break;
    case "ack":
      onAck(frame);
      break;
    case "chat":
      onDirect(frame.from, frame.content, frame.timestamp, frame.id);
      break;
    case "direct_history":
      onDirectHistory(frame, what);
      break;
    case "offline_list":
      for (const item of frame.data || []) onDirect(item.from, item.content, item.created_at, item.msg_id);
      break;
    case "typing":
      onTyping(frame);
      break;
    case "deleted":
      onDeleted(frame);
      break;
    case "room_list":
      onRoomList(frame);
      break;
    case "kicked":
      onKicked(frame);
      break;
    case "error":
      onError(frame, what);
      break;
    default:
      break;
  }
}

// -- conversations -------------------------------------------------------------

function newLog(label) {
  return el("ol", {
    className: "messages",
    attrs: { role: "log", "aria-live": "polite", "aria-label": label, tabindex: "0" },
  });
}

function addRoom(name) {
  let room = state.rooms.get(name);
  if (room) return room;
  room = {
    kind: "room",
    name,
    key: `#${name}`,
    ol: newLog(`Messages in ${name}`),
    ids: new Set(),
    lastId: 0,
    oldestId: null,
    hasOlder: false,
    loaded: false,
    joined: false,
    members: [],
    total: 0,
    unread: 0,
    typing: new Map(),
    seenSelfJoin: false,
    button: null,
    item: null,
  };
  room.button = el("button", { className: "conv", attrs: { type: "button", "data-room": name } });
  room.item = el("li", {}, [room.button]);
  room.button.addEventListener("click", () => select(room, true));
  state.rooms.set(name, room);
  ui.roomList.append(room.item);
  renderListButton(room);
  return room;
}

function addDm(nickname) {
  const key = nickname.toLowerCase();
  let dm = state.dms.get(key);
  if (dm) return dm;
  dm = {
    kind: "dm",
    name: nickname,
    key: `@${key}`,
    ol: newLog(`Direct messages with ${nickname}`),
    ids: new Set(),
    unread: 0,
    button: null,
    item: null,
  };
  dm.button = el("button", { className: "conv", attrs: { type: "button", "data-dm": nickname } });
  dm.item = el("li", {}, [dm.button]);
  dm.button.addEventListener("click", () => select(dm, true));
  state.dms.set(key, dm);
  ui.dmList.append(dm.item);
  renderListButton(dm);
  saveDms();
  loadDirectHistory(dm);
  return dm;
}

function renderListButton(conv) {
  const label = conv.kind === "room" ? `# ${conv.name}` : `@ ${conv.name}`;
  const children = [el("span", { className: "conv-name", text: label })];
  if (conv.unread > 0) {
    children.push(el("span", { className: "badge", text: String(conv.unread), attrs: { "aria-label": `${conv.unread} unread` } }));
  }
  conv.button.replaceChildren(...children);
  if (state.current === conv) conv.button.setAttribute("aria-current", "true");
  else conv.button.removeAttribute("aria-current");
}

function select(conv, focusInput = false) {
  const previous = state.current;
  state.current = conv;
  conv.unread = 0;
  if (previous && previous !== conv) renderListButton(previous);
  renderListButton(conv);
  renderCurrent();
  if (focusInput) ui.messageInput.focus();
}

function renderCurrent() {
  const conv = state.current;
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
  ui.convTitle.textContent = conv.kind === "room" ? `# ${conv.name}` : `@ ${conv.name}`;
  ui.messageInput.placeholder = conv.kind === "room" ? `Message # ${conv.name}` : `Message @ ${conv.name}`;
  ui.log.append(conv.ol);
  renderMeta();
  renderPeople();
  renderTyping();
  scrollToEnd(conv);
}

function renderMeta() {
  const conv = state.current;
  if (!conv) return;
  if (conv.kind === "room") {
    ui.convMeta.textContent = conv.joined ? `${conv.total} online` : "joining…";
    ui.loadOlder.hidden = !conv.hasOlder;
  } else {
    ui.convMeta.textContent = "Direct messages";
    ui.loadOlder.hidden = !conv.hasOlder;
  }
}

function renderPeople() {
  clear(ui.people);
  const conv = state.current;
  if (!conv || conv.kind !== "room") return;
  for (const name of conv.members) {
    if (state.me && name.toLowerCase() === state.me.nickname.toLowerCase()) {
      ui.people.append(el("li", { className: "me", text: `${name} (you)` }));
    } else {
      const button = el("button", {
        className: "person",
        text: name,
        attrs: { type: "button", title: `Send ${name} a direct message` },
      });
      button.addEventListener("click", () => select(addDm(name), true));
      ui.people.append(el("li", {}, [button]));
    }
  }
}

function renderTyping() {
  const conv = state.current;
  const names = conv && conv.kind === "room" ? [...conv.typing.keys()] : [];
  ui.typing.textContent = names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

function nearEnd(ol) {
  return ol.scrollHeight - ol.scrollTop - ol.clientHeight < 80;
}

function scrollToEnd(conv) {
  conv.ol.scrollTop = conv.ol.scrollHeight;
}

/** A new event in a conversation: scroll if it is shown, else count it unread. */
function noteNew(conv, stick, countUnread = true) {
  if (state.current === conv) {
    if (stick) scrollToEnd(conv);
  } else if (countUnread) {
    conv.unread += 1;
    renderListButton(conv);
  }
}

// -- message items -------------------------------------------------------------

function messageItem({ id, username, body, timestamp, mine }) {
  const time = el("time", { className: "msg-time", text: localTime(timestamp) });
  if (timestamp) {
    time.dateTime = timestamp;
    time.title = localDateTime(timestamp);
  }
  const li = el("li", { className: mine ? "msg mine" : "msg" }, [
    time,
    el("span", { className: "msg-user", text: username }),
    el("span", { className: "msg-body", text: body }),
  ]);
  if (id !== undefined && id !== null) li.dataset.id = String(id);
  return li;
}

function systemItem(text, timestamp) {
  const time = el("time", { className: "msg-time", text: localTime(timestamp) });
  if (timestamp) time.dateTime = timestamp;
  return el("li", { className: "system" }, [time, el("span", { className: "system-text", text })]);
}

/** Put a live or resumed item with a stored id into its place (ids increase
 * with time): at the end if it is the newest, else after the last item with
 * a smaller id, else before the first. */
function insertById(ol, li, id) {
  const items = ol.querySelectorAll("li[data-id]");
  if (items.length === 0 || Number(items[items.length - 1].dataset.id) < id) {
    ol.append(li);
    return;
  }
  for (let i = items.length - 1; i >= 0; i -= 1) {
    if (Number(items[i].dataset.id) < id) {
      items[i].after(li);
      return;
    }
  }
  if (items.length > 0) items[0].before(li);
  else ol.append(li);
}

function isMe(name) {
  return Boolean(state.me) && typeof name === "string" && name.toLowerCase() === state.me.nickname.toLowerCase();
}

/** Add stored room messages (live, history or resume), skipping known ids. */
function addRoomMessages(room, messages, { older = false } = {}) {
  const stick = nearEnd(room.ol);
  const heightBefore = room.ol.scrollHeight;
  // An older page (oldest first) goes above everything shown so far.
  const page = document.createDocumentFragment();
  let added = 0;
  for (const m of messages) {
    if (typeof m.id !== "number" || room.ids.has(m.id)) continue;
    if (isMe(m.username)) adoptPending(room, m);
    room.ids.add(m.id);
    const li = messageItem({ id: m.id, username: m.username, body: m.body, timestamp: m.timestamp, mine: isMe(m.username) });
    if (older) page.append(li);
    else insertById(room.ol, li, m.id);
    room.lastId = Math.max(room.lastId, m.id);
    room.oldestId = room.oldestId === null ? m.id : Math.min(room.oldestId, m.id);
    added += 1;
  }
  if (older) room.ol.prepend(page);
  if (older && state.current === room) {
    room.ol.scrollTop += room.ol.scrollHeight - heightBefore;
  } else if (added > 0) {
    noteNew(room, stick, !older && room.loaded);
  }
  return added;
}

// -- rooms -------------------------------------------------------------------

function joinRoom(name) {
  const existing = state.rooms.get(name);
  if (existing) {
    select(existing, true);
    return;
  }
  const room = addRoom(name);
  saveRooms();
  select(room, true);
  sendJoin(room);
}

function sendJoin(room) {
  room.joined = false;
  const frame = { type: "join", room: room.name };
  if (room.lastId > 0) frame.last_id = room.lastId;
  request(frame, { kind: "join", room: room.name, resume: room.lastId > 0, generation: state.generation });
  if (state.current === room) renderMeta();
}

function onJoined(frame, what) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  room.joined = true;
  room.total = frame.totalUsers ?? room.total;
  if (!room.loaded && !(what && what.resume)) {
    request({ type: "history", room: room.name, limit: HISTORY_PAGE }, { kind: "history", room: room.name });
  }
  request({ type: "who", room: room.name }, { kind: "who", room: room.name });
  if (state.current === room) renderMeta();
}

function onHistory(frame, what) {
  const room = state.rooms.get(frame.room);
  if (!room || !what) return;
  const messages = Array.isArray(frame.messages) ? frame.messages : [];
  if (what.kind === "join") {
    // Resume after a reconnect: everything after the last id we saw.
    if (frame.recovered === false) {
      // More than the server hands back were missed: start from its newest page.
      clear(room.ol);
      room.ids.clear();
      room.oldestId = null;
      room.hasOlder = true;
    }
    addRoomMessages(room, messages);
    room.loaded = true;
    failStalePending(room);
  } else if (what.kind === "history") {
    // The first page goes above whatever arrived live meanwhile.
    addRoomMessages(room, messages, { older: true });
    room.loaded = true;
    room.hasOlder = messages.length >= HISTORY_PAGE;
    scrollToEnd(room);
  } else if (what.kind === "older") {
    addRoomMessages(room, messages, { older: true });
    room.hasOlder = messages.length >= HISTORY_PAGE;
    ui.loadOlder.disabled = false;
    if (messages.length === 0) room.ol.prepend(systemItem("This is the beginning of the room.", null));
  }
  if (state.current === room) renderMeta();
}

function loadOlder() {
  const room = state.current;
  if (room && room.kind === "dm") {
    loadOlderDirect(room);
    return;
  }
  if (!room || room.kind !== "room" || room.oldestId === null) return;
  const id = request(
    { type: "history", room: room.name, before: room.oldestId, limit: HISTORY_PAGE },
    { kind: "older", room: room.name },
  );
  if (id !== null) ui.loadOlder.disabled = true;
  else showAlert("Not connected: older messages can be loaded once the connection is back.");
}

function onWho(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  room.members = Array.isArray(frame.users) ? frame.users.filter((u) => typeof u === "string") : [];
  room.total = frame.totalUsers ?? room.members.length;
  if (state.current === room) {
    renderMeta();
    renderPeople();
  }
}

function onRoomMessage(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  room.typing.delete(frame.username);
  if (state.current === room) renderTyping();
  if (typeof frame.totalUsers === "number") room.total = frame.totalUsers;
  addRoomMessages(room, [frame]);
}

function onPresence(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  const self = isMe(frame.username);
  if (typeof frame.totalUsers === "number") room.total = frame.totalUsers;
  // Our own join is shown once; re-joins after a reconnect are not news.
  if (!self || (frame.type === "join" && !room.seenSelfJoin)) {
    const stick = nearEnd(room.ol);
    const verb = frame.type === "join" ? "joined" : "left";
    const text = self ? `You joined ${room.name}` : `${frame.username} ${verb}`;
    room.ol.append(systemItem(text, frame.timestamp));
    if (state.current === room && stick) scrollToEnd(room);
  }
  if (self && frame.type === "join") room.seenSelfJoin = true;
  if (room.joined) request({ type: "who", room: room.name }, { kind: "who", room: room.name });
  if (state.current === room) renderMeta();
}

function leaveRoom(room) {
  request({ type: "leave", room: room.name }, { kind: "leave", room: room.name });
  removeRoom(room);
}

function removeRoom(room) {
  state.rooms.delete(room.name);
  room.item.remove();
  saveRooms();
  if (state.current === room) {
    const next = state.rooms.values().next().value || state.dms.values().next().value || null;
    state.current = null;
    if (next) select(next);
    else renderCurrent();
  }
}

function onKicked(frame) {
  const room = state.rooms.get(frame.room);
  const reason = typeof frame.reason === "string" && frame.reason ? `: ${frame.reason}` : "";
  showAlert(`A moderator removed you from ${frame.room}${reason}`);
  if (room) removeRoom(room);
}

function onTyping(frame) {
  const room = state.rooms.get(frame.room);
  if (!room || isMe(frame.username)) return;
  const old = room.typing.get(frame.username);
  if (old) clearTimeout(old);
  room.typing.set(
    frame.username,
    setTimeout(() => {
      room.typing.delete(frame.username);
      if (state.current === room) renderTyping();
    }, TYPING_SHOW_MS),
  );
  if (state.current === room) renderTyping();
}

// -- direct messages -------------------------------------------------------------

function onDirect(from, content, timestamp, id) {
  if (typeof from !== "string" || typeof content !== "string") return;
  const dm = addDm(from);
  if (typeof id === "number") {
    if (dm.ids.has(id)) return;
    dm.ids.add(id);
  }
  const stick = nearEnd(dm.ol);
  const li = messageItem({ id, username: from, body: content, timestamp, mine: false });
  if (typeof id === "number") insertById(dm.ol, li, id);
  else dm.ol.append(li);
  noteNew(dm, stick);
}

/** A direct message of ours marked failed that was stored after all. */
function adoptFailed(dm, body) {
  for (const li of dm.ol.querySelectorAll("li.msg.mine.failed:not([data-id])")) {
    if (li.querySelector(".msg-body").textContent === body) {
      li.remove();
      return;
    }
  }
}

/** Ask for the stored conversation with ``dm`` (its newest page). */
function loadDirectHistory(dm) {
  if (!state.conn || !state.conn.ready) return; // onReady asks again
  request({ type: "get_direct_history", with: dm.name, limit: HISTORY_PAGE }, { kind: "dm_history", dm });
}

/** The page of the conversation before the oldest message shown. */
function loadOlderDirect(dm) {
  const ids = [...dm.ids];
  if (ids.length === 0) return;
  const frame = { type: "get_direct_history", with: dm.name, before: Math.min(...ids), limit: HISTORY_PAGE };
  if (request(frame, { kind: "dm_history", dm, older: true }) !== null) ui.loadOlder.disabled = true;
  else showAlert("Not connected: older messages can be loaded once the connection is back.");
}

function onDirectHistory(frame, what) {
  if (!what || !what.dm || state.dms.get(what.dm.name.toLowerCase()) !== what.dm) return;
  const dm = what.dm;
  const stick = nearEnd(dm.ol) && !what.older;
  const messages = Array.isArray(frame.messages) ? frame.messages : [];
  // A full page may have older ones behind it (the first answer decides
  // until "Load older" asks for more).
  if (what.older || dm.hasOlder === undefined) dm.hasOlder = messages.length >= HISTORY_PAGE;
  if (what.older) ui.loadOlder.disabled = false;
  for (const m of messages) {
    if (typeof m.id !== "number" || typeof m.content !== "string" || dm.ids.has(m.id)) continue;
    dm.ids.add(m.id);
    const mine = Boolean(state.me) && m.from_user_id === state.me.user_id;
    if (mine) adoptFailed(dm, m.content);
    insertById(dm.ol, messageItem({ id: m.id, username: m.from, body: m.content, timestamp: m.timestamp, mine }), m.id);
  }
  // A short page going back reached the first message.
  if (what.older && !dm.hasOlder) dm.ol.prepend(systemItem("This is the beginning of the conversation.", null));
  if (stick || (state.current === dm && !what.older)) scrollToEnd(dm);
  if (state.current === dm) renderMeta();
}

function openDm(name) {
  if (state.me && name.toLowerCase() === state.me.nickname.toLowerCase()) {
    showAlert("That is you. Pick someone else to write to.");
    return;
  }
  select(addDm(name), true);
}

// -- sending -------------------------------------------------------------------

function sendCurrent() {
  const conv = state.current;
  const text = ui.messageInput.value;
  if (!conv || !text.trim()) return;
  if (!state.conn || !state.conn.ready) {
    showAlert("Not connected right now. Your message is still in the box: send it again when the connection is back.");
    return;
  }
  const frame =
    conv.kind === "room"
      ? { type: "message", room: conv.name, body: text }
      : { type: "chat", to: conv.name, content: text };
  const id = state.conn.newId("m");
  frame.id = id;
  if (!state.conn.send(frame)) {
    showAlert("Not connected right now: the message was not sent.");
    return;
  }
  const li = messageItem({ id: undefined, username: state.me.nickname, body: text, timestamp: null, mine: true });
  li.classList.add("pending");
  li.querySelector(".msg-time").textContent = "…";
  conv.ol.append(li);
  scrollToEnd(conv);
  state.pending.set(id, { conv, body: text, li, generation: state.generation });
  ui.messageInput.value = "";
}

function onAck(frame) {
  const pending = state.pending.get(frame.id);
  if (!pending) return;
  state.pending.delete(frame.id);
  const { conv, li } = pending;
  li.classList.remove("pending", "unconfirmed");
  const time = li.querySelector(".msg-time");
  time.textContent = localTime(frame.timestamp);
  time.dateTime = frame.timestamp;
  time.title = localDateTime(frame.timestamp);
  if (conv.kind === "dm" && typeof frame.message_id === "number") {
    if (conv.ids.has(frame.message_id)) {
      li.remove(); // the stored copy is already shown (history got there first)
      return;
    }
    conv.ids.add(frame.message_id);
    li.dataset.id = String(frame.message_id);
  }
  if (conv.kind === "room" && typeof frame.message_id === "number") {
    if (conv.ids.has(frame.message_id)) {
      li.remove(); // already shown (a resume got there first)
      return;
    }
    conv.ids.add(frame.message_id);
    li.dataset.id = String(frame.message_id);
    conv.lastId = Math.max(conv.lastId, frame.message_id);
    if (conv.oldestId === null) conv.oldestId = frame.message_id;
  }
}

/** The room directory: a button per active room (joining it on click). */
function onRoomList(frame) {
  clear(ui.directory);
  const rooms = Array.isArray(frame.rooms) ? frame.rooms : [];
  for (const entry of rooms) {
    if (!entry || typeof entry.room !== "string") continue;
    const count = Number(entry.totalUsers) || 0;
    const button = el("button", {
      className: "conv",
      attrs: {
        type: "button",
        "data-directory-room": entry.room,
        "aria-label": `Join ${entry.room}, ${count} online`,
      },
    }, [
      el("span", { className: "conv-name", text: `# ${entry.room}` }),
      el("span", { className: "count", text: String(count) }),
    ]);
    button.addEventListener("click", () => joinRoom(entry.room));
    ui.directory.append(el("li", {}, [button]));
  }
  if (rooms.length === 0) ui.directory.append(el("li", { className: "hint", text: "Nobody is in any room yet." }));
  ui.directory.hidden = ui.directoryTitle.hidden = false;
}

/** A moderator removed a stored message: take it off the screen. */
function onDeleted(frame) {
  const room = state.rooms.get(frame.room);
  if (!room || typeof frame.id !== "number") return;
  const li = room.ol.querySelector(`li[data-id="${frame.id}"]`);
  if (li) li.remove();
}

/** A resumed room message of ours that we sent but never saw acknowledged:
 * drop the unconfirmed copy, the stored one is shown in its place. */
function adoptPending(room, m) {
  for (const [id, pending] of state.pending) {
    if (pending.conv === room && pending.body === m.body && pending.generation < state.generation) {
      state.pending.delete(id);
      pending.li.remove();
      return;
    }
  }
}

function markPendingUnconfirmed() {
  for (const pending of state.pending.values()) pending.li.classList.add("unconfirmed");
}

function failStalePending(room) {
  for (const [id, pending] of state.pending) {
    if (pending.conv === room && pending.generation < state.generation) {
      state.pending.delete(id);
      markFailed(pending.li, "not sent: the connection was lost");
    }
  }
}

function markFailed(li, why) {
  li.classList.remove("pending", "unconfirmed");
  li.classList.add("failed");
  li.querySelector(".msg-time").textContent = "!";
  li.append(el("span", { className: "msg-error", text: why }));
}

function onError(frame, what) {
  const pending = frame.id !== undefined ? state.pending.get(frame.id) : undefined;
  const text = errorText(frame);
  if (pending) {
    state.pending.delete(frame.id);
    markFailed(pending.li, `not sent: ${frame.content || frame.code}`);
    // Put the text back so that it can be shortened or sent again.
    if (!ui.messageInput.value && state.current === pending.conv) ui.messageInput.value = pending.body;
  }
  if (what && what.kind === "join") {
    const room = state.rooms.get(what.room);
    if (room && !room.loaded) removeRoom(room);
  }
  if (what && (what.kind === "older" || (what.kind === "dm_history" && what.older))) ui.loadOlder.disabled = false;
  if (frame.code === "unauthorized" || frame.code === "banned") return; // the connection handles these
  showAlert(text, typeof frame.content === "string" ? frame.content : undefined);
}

// -- wiring --------------------------------------------------------------------

ui.loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  withBusyForm(logIn);
});
ui.registerButton.addEventListener("click", () => withBusyForm(register));
ui.logout.addEventListener("click", () => {
  if (state.me) revokeToken(state.me.token);
  logOut();
});
ui.passwordButton.addEventListener("click", openPasswordDialog);
ui.passwordCancel.addEventListener("click", () => ui.passwordDialog.close());
ui.passwordForm.addEventListener("submit", (event) => {
  event.preventDefault();
  changePassword();
});
ui.reconnect.addEventListener("click", () => {
  if (state.conn) state.conn.reconnectNow();
});
ui.alertClose.addEventListener("click", hideAlert);

ui.browseRooms.addEventListener("click", () => {
  if (!request({ type: "list_rooms" }, { kind: "directory" })) showAlert("Not connected right now.");
});
ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = ui.roomInput.value.trim();
  if (!name) {
    showAlert("Type the name of a room to join, for example lobby.");
    ui.roomInput.focus();
    return;
  }
  ui.roomInput.value = "";
  joinRoom(name);
});

ui.dmForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = ui.dmInput.value.trim();
  if (!name) {
    ui.dmInput.focus();
    return;
  }
  ui.dmInput.value = "";
  openDm(name);
});

ui.messageForm.addEventListener("submit", (event) => {
  event.preventDefault();
  sendCurrent();
});

ui.messageInput.addEventListener("input", () => {
  const conv = state.current;
  const now = Date.now();
  if (!conv || conv.kind !== "room" || !conv.joined || !state.conn || !ui.messageInput.value) return;
  if (now - state.lastTypingSent < TYPING_SEND_EVERY_MS) return;
  state.lastTypingSent = now;
  state.conn.send({ type: "typing", room: conv.name });
});

ui.loadOlder.addEventListener("click", loadOlder);
ui.leaveButton.addEventListener("click", () => {
  if (state.current && state.current.kind === "room") leaveRoom(state.current);
});

restoreSession();
