// The account forms: log in, register (then log in), and the password
// dialog. They talk HTTP (api.js) and hand a successful login to the entry
// point, which starts the session.

import * as api from "./api.js";

export class AccountForms {
  /**
   * @param {object} options
   * @param {object} options.elements  loginForm, nickname, password,
   *   loginButton, registerButton, passwordDialog, passwordForm,
   *   currentPassword, newPassword, repeatPassword, passwordError,
   *   passwordSave, passwordCancel
   * @param {import("./view.js").PageView} options.view
   * @param {import("./session.js").Session} options.session
   * @param {import("./client.js").ChatClient} options.client
   * @param {(me: object) => void} options.onLoggedIn  with the login's
   *   {token, nickname, user_id, expires_at} (and, with "Keep me signed
   *   in", refresh_token and refresh_expires_in)
   */
  constructor({ elements, view, session, client, onLoggedIn }) {
    this.ui = elements;
    this.view = view;
    this.session = session;
    this.client = client;
    this.onLoggedIn = onLoggedIn;
    elements.loginForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.withBusyForm(() => this.logIn());
    });
    elements.registerButton.addEventListener("click", () => this.withBusyForm(() => this.register()));
    elements.passwordCancel.addEventListener("click", () => elements.passwordDialog.close());
    elements.passwordForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.changePassword();
    });
  }

  focus() {
    this.ui.nickname.focus();
  }

  credentials() {
    return { nickname: this.ui.nickname.value.trim(), password: this.ui.password.value };
  }

  async withBusyForm(action) {
    const { ui } = this;
    ui.loginButton.disabled = ui.registerButton.disabled = true;
    try {
      await action();
    } catch (error) {
      this.view.showAlert("Could not reach the server. Check your connection and try again.", String(error));
    } finally {
      ui.loginButton.disabled = ui.registerButton.disabled = false;
    }
  }

  async logIn() {
    const { ui } = this;
    const { nickname, password } = this.credentials();
    if (!nickname || !password) {
      this.view.showAlert("Enter a nickname and a password.", undefined, { passing: true });
      (nickname ? ui.password : ui.nickname).focus();
      return;
    }
    const { status, data } = await api.logIn(nickname, password, ui.remember.checked);
    if (status !== 200 || !data || typeof data.token !== "string") {
      this.view.showAlert(api.httpError(status, data, "Login failed"));
      ui.password.select();
      return;
    }
    this.view.hideAlert();
    ui.password.value = "";
    this.onLoggedIn(data);
  }

  async register() {
    const { ui } = this;
    const { nickname, password } = this.credentials();
    if (!nickname || !password) {
      this.view.showAlert("Pick a nickname and a password to register.", undefined, { passing: true });
      (nickname ? ui.password : ui.nickname).focus();
      return;
    }
    const { status, data } = await api.register(nickname, password);
    if (status !== 201) {
      this.view.showAlert(api.httpError(status, data, "Registration failed"));
      return;
    }
    await this.logIn();
  }

  openPasswordDialog() {
    const { ui } = this;
    ui.passwordForm.reset();
    ui.passwordError.textContent = "";
    ui.passwordDialog.showModal();
    ui.currentPassword.focus();
  }

  /** Change the password, then log in with the new one: the change revokes
   * every token issued until now, this window's included, and closes every
   * connection of the account (--revoke-on-password-change), this window's
   * too, which reconnects at once with the fresh token. */
  async changePassword() {
    const { ui } = this;
    const me = this.session.me;
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
      this.client.expectLogout(15000);
      const changed = await api.changePassword(me.nickname, current, fresh);
      if (changed.status !== 200) {
        ui.passwordError.textContent =
          changed.status === 401
            ? "That is not your current password."
            : api.httpError(changed.status, changed.data, "Not changed");
        return;
      }
      // The change revoked the refresh tokens too: keep the new login's.
      const remember = this.session.remembered() !== null;
      const { status, data } = await api.logIn(me.nickname, fresh, remember);
      if (status === 200 && data && typeof data.token === "string" && this.session.renew(me, data.token, data.expires_at)) {
        this.client.setToken(data.token);
        if (typeof data.refresh_token === "string") {
          this.session.saveRefresh(me.nickname, data.refresh_token, data.refresh_expires_in);
        }
        this.client.reconnectNow();
      }
      ui.passwordDialog.close();
      this.view.showAlert("Your password was changed.", undefined, { good: true, passing: true });
    } catch (error) {
      ui.passwordError.textContent = `Could not reach the server (${error}).`;
    } finally {
      ui.passwordSave.disabled = false;
    }
  }

  /** Logged out: no dialog left open, the cursor in the login form. */
  signedOut() {
    if (this.ui.passwordDialog.open) this.ui.passwordDialog.close();
    this.focus();
  }
}
