// The page around the conversations: its elements (found once, by id), the
// top bar (status line, who is signed in), the alert banner, and switching
// between the login form and the chat. Alerts about one thing that went
// wrong (too fast, too long, the server busy) go away by themselves after a
// while; those that stay true until something changes (the connection is
// gone, the account is banned) stay until then or until dismissed.

/** How long a passing alert stays (ms). */
const PASSING_ALERT_MS = 10000;

/** Friendly words for the server's error codes (docs/websocket.md, Errors). */
const ERROR_TEXT = Object.freeze({
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
  not_found: "That message no longer exists.",
  forbidden: "You are not allowed to do that.",
  edit_window_passed: "That message is too old to be changed.",
});

/** Error codes about one request that need no action once read. */
const PASSING_ERRORS = Object.freeze([
  "rate_limited",
  "content_too_long",
  "invalid_content",
  "not_in_room",
  "unknown_recipient",
  "busy",
  "storage_failed",
  "invalid_request",
  "invalid_room",
  "not_found",
  "forbidden",
  "edit_window_passed",
]);

/** Every element the scripts use, by the name they use it under. */
export function findElements(doc) {
  const $ = (id) => doc.getElementById(id);
  return {
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
    remember: $("remember"),
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
    convTopic: $("conv-topic"),
    topicButton: $("topic-button"),
    topicDialog: $("topic-dialog"),
    topicForm: $("topic-form"),
    topicInput: $("topic-input"),
    topicCancel: $("topic-cancel"),
    closeDmButton: $("close-dm-button"),
    deleteDialog: $("delete-dialog"),
    deleteForm: $("delete-form"),
    deletePreview: $("delete-preview"),
    deleteConfirm: $("delete-confirm"),
    deleteCancel: $("delete-cancel"),
    searchForm: $("search-form"),
    searchInput: $("search-input"),
    searchTitle: $("search-title"),
    searchResults: $("search-results"),
    searchMore: $("search-more"),
    searchClose: $("search-close"),
    leaveButton: $("leave-button"),
    muteButton: $("mute-button"),
    roomsButton: $("rooms-button"),
    peopleButton: $("people-button"),
    sidebar: $("sidebar"),
    peoplePanel: $("people-panel"),
    backdrop: $("drawer-backdrop"),
    notifyToggle: $("notify-toggle"),
    log: $("log"),
    emptyHint: $("empty-hint"),
    typing: $("typing"),
    messageForm: $("message-form"),
    messageInput: $("message-input"),
    sendButton: $("send-button"),
    people: $("people"),
  };
}

export class PageView {
  /**
   * @param {object} elements  status, reconnect, whoami, logout,
   *   passwordButton, alert, alertText, alertClose, loginView, chatView
   */
  constructor(elements) {
    this.ui = elements;
    /** The banner shows a lost connection (hidden again once it is back). */
    this.connectionAlert = false;
    /** Hides a passing alert. */
    this.alertTimer = null;
    elements.alertClose.addEventListener("click", () => this.hideAlert());
  }

  /** Show ``text`` (and the server's ``detail``) in the banner; a
   * ``passing`` one goes away by itself. */
  showAlert(text, detail, { good = false, passing = false } = {}) {
    const { ui } = this;
    ui.alertText.textContent = detail && detail !== text ? `${text} (${detail})` : text;
    ui.alert.classList.toggle("good", good);
    ui.alert.hidden = false;
    clearTimeout(this.alertTimer);
    this.alertTimer = passing ? setTimeout(() => this.hideAlert(), PASSING_ALERT_MS) : null;
  }

  hideAlert() {
    clearTimeout(this.alertTimer);
    this.alertTimer = null;
    this.ui.alert.hidden = true;
    this.ui.alertText.textContent = "";
  }

  /** The connection is gone for good (until "Reconnect now"). */
  showConnectionAlert(text) {
    this.showAlert(text);
    this.connectionAlert = true;
  }

  /** Connected again: a connection alert is no longer true. */
  connectionBack() {
    if (this.connectionAlert) this.hideAlert();
    this.connectionAlert = false;
  }

  /** An "error" frame, in plain words with the server's own text. */
  showError(frame) {
    if (frame.code === "unauthorized" || frame.code === "banned") return; // the connection handles these
    const text = ERROR_TEXT[frame.code] || "The server refused a request.";
    this.showAlert(text, typeof frame.content === "string" ? frame.content : undefined, {
      passing: PASSING_ERRORS.includes(frame.code),
    });
  }

  setStatus(text, { offline = false, canReconnect = false } = {}) {
    this.ui.status.textContent = text;
    this.ui.status.classList.toggle("offline", offline);
    this.ui.reconnect.hidden = !canReconnect;
  }

  signedIn(nickname) {
    const { ui } = this;
    ui.loginView.hidden = true;
    ui.chatView.hidden = false;
    ui.logout.hidden = false;
    ui.passwordButton.hidden = false;
    ui.whoami.hidden = false;
    ui.whoami.textContent = `Signed in as ${nickname}`;
  }

  /** Back to the login form, saying why if there is a reason. */
  signedOut(message) {
    const { ui } = this;
    ui.chatView.hidden = true;
    ui.loginView.hidden = false;
    ui.logout.hidden = true;
    ui.passwordButton.hidden = true;
    ui.whoami.hidden = true;
    ui.whoami.textContent = "";
    this.setStatus("Not connected", { offline: true });
    if (message) this.showAlert(message);
    else this.hideAlert();
  }
}
