// The HTTP calls the page makes (docs/protocol.md): register, log in (and
// renew a login with its refresh token), log out, change the password. Plain functions over fetch, no state: each returns
// the status and the decoded JSON body (or null) and leaves it to the caller
// to say what went wrong, with httpError for the words.

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  return { status: response.status, data: await readJson(response) };
}

function basicAuth(nickname, password) {
  const bytes = new TextEncoder().encode(`${nickname}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

/** POST /login: 200 with {token, nickname, user_id, expires_at}; with
 * ``remember``, also {refresh_token, refresh_expires_in} (a login that
 * survives the tab: docs/websocket.md, "Long-lived logins"). */
export function logIn(nickname, password, remember = false) {
  return postJson("/login", remember ? { nickname, password, remember: true } : { nickname, password });
}

/** POST /refresh: a new signed token and the next refresh token (the one
 * given is spent); 401 when it is unknown, expired, revoked or was used
 * before. */
export function refresh(refreshToken) {
  return postJson("/refresh", { refresh_token: refreshToken });
}

/** POST /register: 201 when the account was created. */
export function register(nickname, password) {
  return postJson("/register", { nickname, password });
}

/** POST /logout: ask the server to forget the token (and the login's
 * refresh tokens, if ``refreshToken`` is given), so that a copy of either
 * stops working too. Fire and forget (``keepalive`` lets it outlive the
 * page): the page logs out whether or not the request gets through. */
export function revokeToken(token, refreshToken = null) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  fetch("/logout", {
    method: "POST",
    headers,
    body: JSON.stringify(refreshToken ? { refresh_token: refreshToken } : {}),
    credentials: "same-origin",
    cache: "no-store",
    keepalive: true,
  }).catch(() => {});
}

/** POST /password with the current password (Basic auth): 200 when
 * changed, which revokes every token of the account issued until now. */
export async function changePassword(nickname, current, fresh) {
  const response = await fetch("/password", {
    method: "POST",
    headers: { Authorization: basicAuth(nickname, current), "Content-Type": "application/json" },
    body: JSON.stringify({ new_password: fresh }),
    credentials: "omit",
    cache: "no-store",
  });
  if (response.status === 200) return { status: 200, data: null };
  return { status: response.status, data: await readJson(response) };
}

/** Plain words for a failed call; ``fallback`` names what failed. */
export function httpError(status, data, fallback) {
  const message = data && typeof data.message === "string" ? data.message : "";
  if (status === 401) return "Wrong nickname or password.";
  if (status === 403) return "This account is banned.";
  if (status === 409) return "That nickname is already taken.";
  if (status === 429) return "Too many attempts. Wait a little, then try again.";
  return message ? `${fallback}: ${message}` : `${fallback} (HTTP ${status}).`;
}
