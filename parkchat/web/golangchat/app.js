// The golang-chat dialect's page: a name and a message box, no account.
// It speaks golang-chat's protocol on /chat: every message is
// {"userName", "body", "timestamp"}; the server sends the room's past on the
// first one and then every message, ours included. Text only: nothing the
// server sends is ever parsed as HTML.

const statusLine = document.getElementById("status");
const list = document.getElementById("messages");
const form = document.getElementById("composer");
const nameInput = document.getElementById("name");
const messageInput = document.getElementById("message");

let socket = null;
let waiting = [];

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function show(message) {
  const item = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = String(message.userName);
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = ` ${String(message.timestamp)}`;
  item.append(who, when, document.createTextNode(`: ${String(message.body)}`));
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(item);
  if (atBottom) {
    list.scrollTop = list.scrollHeight;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/chat`);
  socket.addEventListener("open", () => {
    setStatus("Connected.");
    for (const frame of waiting) {
      socket.send(frame);
    }
    waiting = [];
  });
  socket.addEventListener("message", (event) => {
    try {
      show(JSON.parse(event.data));
    } catch (error) {
      setStatus(`Could not read a message: ${error.message}`, true);
    }
  });
  socket.addEventListener("close", (event) => {
    socket = null;
    const why = event.reason ? `: ${event.reason}` : "";
    setStatus(`Disconnected${why}. Send again to reconnect.`, true);
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const userName = nameInput.value.trim();
  if (!userName) {
    setStatus("Pick a name first.", true);
    nameInput.focus();
    return;
  }
  const timestamp = new Date().toLocaleString("en-US", {
    hour: "numeric",
    minute: "numeric",
    hour12: true,
  });
  const frame = JSON.stringify({ userName, body: messageInput.value, timestamp });
  messageInput.value = "";
  if (socket === null) {
    list.replaceChildren();
    waiting.push(frame);
    setStatus("Connecting…");
    connect();
  } else if (socket.readyState === WebSocket.CONNECTING) {
    waiting.push(frame);
  } else {
    socket.send(frame);
  }
  messageInput.focus();
});

messageInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});
