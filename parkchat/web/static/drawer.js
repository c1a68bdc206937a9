// The phone layout's drawers: below 760 px wide the conversation fills the
// screen, and the room list (the sidebar) and the people list slide in over
// it from the sides. Each drawer has a button that opens it (with
// aria-expanded); Escape, the backdrop or picking a conversation closes it,
// and focus goes back to where it was. At desktop width the buttons are
// hidden by the style sheet and the panels are plain columns: nothing here
// changes what they do there.

const PHONE_QUERY = "(max-width: 760px)";

export class Drawers {
  /**
   * @param {object} options
   * @param {{button: HTMLButtonElement, panel: HTMLElement}[]} options.drawers
   * @param {HTMLElement} options.backdrop
   * @param {Window} [options.win]
   */
  constructor({ drawers, backdrop, win = window }) {
    this.drawers = drawers;
    this.backdrop = backdrop;
    this.phone = win.matchMedia(PHONE_QUERY);
    /** The open drawer, or null. */
    this.open = null;
    /** Where the focus was before it opened. */
    this.returnFocus = null;
    for (const drawer of drawers) {
      drawer.button.setAttribute("aria-expanded", "false");
      drawer.button.addEventListener("click", () => (this.open === drawer ? this.close() : this.show(drawer)));
    }
    backdrop.addEventListener("click", () => this.close());
    win.document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.open) {
        event.preventDefault();
        this.close();
      }
    });
    // Back to desktop width: nothing is a drawer any more.
    this.phone.addEventListener("change", () => {
      if (!this.phone.matches) this.close(false);
    });
  }

  /** Whether the page has the phone layout now. */
  get isPhone() {
    return this.phone.matches;
  }

  /** Open ``drawer`` (only in the phone layout) and move the focus into it. */
  show(drawer, focus = null) {
    if (!this.isPhone) return;
    if (this.open && this.open !== drawer) this.close(false);
    this.returnFocus = drawer.button.ownerDocument.activeElement;
    this.open = drawer;
    drawer.panel.classList.add("open");
    drawer.button.setAttribute("aria-expanded", "true");
    this.backdrop.hidden = false;
    const target = focus || drawer.panel.querySelector("button:not([hidden]), input, [tabindex='0']");
    if (target) target.focus();
  }

  /** Open the drawer that holds ``element`` (the room list, say). */
  showFor(element, focus = null) {
    const drawer = this.drawers.find((d) => d.panel.contains(element));
    if (drawer) this.show(drawer, focus);
  }

  /** Close the open drawer; the focus goes back where it was unless
   * ``restore`` is false (a conversation was picked: the caller moves it). */
  close(restore = true) {
    const drawer = this.open;
    if (!drawer) return;
    this.open = null;
    drawer.panel.classList.remove("open");
    drawer.button.setAttribute("aria-expanded", "false");
    this.backdrop.hidden = true;
    if (restore && this.returnFocus && this.returnFocus.isConnected) this.returnFocus.focus();
    this.returnFocus = null;
  }
}
