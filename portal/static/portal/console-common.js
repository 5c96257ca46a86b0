// What the VNC and serial views share: a single-use ticket per connection, reconnecting after a
// drop with backoff, a clear message for every close code of the console proxy, and keyboard focus
// that goes into the machine on click/Enter and back to the page on Escape.
import { api } from "./api.js";

// Close codes of vncproxy/consumers.py. Transient ones reconnect by themselves while the machine
// runs; the others wait for the student to press "Reconnect".
const TRANSIENT = new Set([1006, 1011, 1012, 1013, 4409, 4502, 4503]);
const CLOSE_MESSAGES = {
  4001: "This console was opened in another window or tab.",
  4401: "The console refused your session; reload the page (or sign in again).",
  4403: "This lab instance is not yours.",
  4404: "This machine has no such console.",
  4408: "Closed after a while without activity.",
  4409: "The machine is not running yet.",
  4429: "Too many consoles are open at once; close one in another tab.",
  4502: "The connection to the machine was lost.",
  4503: "The cluster is unavailable right now.",
};
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30000;
// A connection that lived this long was a good one: the next drop starts the backoff afresh.
const STABLE_AFTER_MS = 15000;

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class ConsoleView {
  // element: the .console wrapper (focusable, holds .console-screen and .console-overlay).
  constructor({ element, instanceId, machine, kind, ticketUrl, onStateChange }) {
    this.element = element;
    this.screen = element.querySelector(".console-screen");
    this.overlay = element.querySelector(".console-overlay");
    this.machine = machine;
    this.kind = kind;
    this.instanceId = instanceId;
    this.ticketUrl = ticketUrl;
    this.onStateChange = onStateChange || (() => {});
    this.state = "idle"; // idle | connecting | connected | retrying | blocked | not-running
    this.running = false;
    this.active = false; // shown at least once: a console connects only after the student looks at it
    this.notRunningText = "The machine is not running.";
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.generation = 0;
    this.buildOverlay();
    this.bindFocus();
    this.setState("idle", "Not connected.");
  }

  get label() {
    return this.kind === "vnc" ? "screen" : "terminal";
  }

  get connected() {
    return this.state === "connected";
  }

  // --- Decided by the page: is the machine running, is this view on screen? -------------------

  setRunning(running, whyNot) {
    if (whyNot) this.notRunningText = whyNot;
    const was = this.running;
    this.running = running;
    if (!running) {
      this.disconnect();
      this.setState("not-running", this.notRunningText);
    } else if (!was || this.state === "not-running") {
      this.attempt = 0;
      this.setState("idle", "Not connected.");
      this.maybeConnect();
    }
  }

  activate() {
    this.active = true;
    this.maybeConnect();
    this.resized();
  }

  maybeConnect() {
    if (this.active && this.running && (this.state === "idle" || this.state === "not-running")) {
      this.connect();
    }
  }

  // --- Connection ---------------------------------------------------------------------------

  async connect() {
    clearTimeout(this.retryTimer);
    const generation = ++this.generation;
    this.setState("connecting", "Connecting…");
    let ticket;
    try {
      ticket = await api("POST", this.ticketUrl, { kind: this.kind });
    } catch (error) {
      if (generation !== this.generation) return;
      if (error.authLost || error.status === 403 || error.status === 404) {
        this.setState("blocked", error.message);
      } else {
        this.retry(error.message); // 409 not running yet, 429, 503, network
      }
      return;
    }
    if (generation !== this.generation || !this.running) return;
    const socket = new WebSocket(ticket.websocket_url, ["binary"]);
    this.socket = socket;
    this.openedAt = null;
    socket.addEventListener("open", () => {
      this.openedAt = Date.now();
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return; // replaced or closed on purpose
      this.socket = null;
      this.detach();
      this.closed(event.code, event.reason);
    });
    this.attach(socket);
  }

  closed(code, reason) {
    const lived = this.openedAt ? Date.now() - this.openedAt : 0;
    if (lived > STABLE_AFTER_MS) this.attempt = 0;
    // 4403 has two causes (not yours, or a page of another origin): the server's reason says which.
    const message = (code === 4403 && reason) || CLOSE_MESSAGES[code] || reason || `The connection closed (${code}).`;
    if (this.running && (TRANSIENT.has(code) || !CLOSE_MESSAGES[code])) {
      this.retry(message);
    } else {
      this.setState("blocked", message);
    }
  }

  retry(message) {
    if (!this.running) return;
    const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.setState("retrying", `${message} Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  disconnect() {
    clearTimeout(this.retryTimer);
    this.generation += 1;
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      this.detach();
      if (socket.readyState <= WebSocket.OPEN) socket.close(1000);
    }
  }

  reconnectNow() {
    this.attempt = 0;
    this.disconnect();
    if (this.running) this.connect();
  }

  // Subclasses: attach(socket) starts the viewer on an opening websocket and calls
  // this.setState("connected", ...) once it works; detach() tears the viewer down.
  attach() {}
  detach() {}
  resized() {}

  // --- What the student sees -------------------------------------------------------------------

  buildOverlay() {
    this.overlayText = document.createElement("p");
    this.reconnectButton = document.createElement("button");
    this.reconnectButton.type = "button";
    this.reconnectButton.textContent = "Reconnect";
    this.reconnectButton.setAttribute("aria-label", `Reconnect the ${this.label} of ${this.machine}`);
    this.reconnectButton.addEventListener("click", () => this.reconnectNow());
    this.overlay.replaceChildren(this.overlayText, this.reconnectButton);
  }

  setState(state, text) {
    this.state = state;
    this.stateText = text;
    this.element.dataset.state = state;
    this.overlay.hidden = state === "connected";
    this.overlayText.textContent = text;
    this.reconnectButton.hidden = !(state === "blocked" || state === "retrying") || !this.running;
    this.onStateChange(this);
  }

  // --- Keyboard focus: into the machine on click or Enter, back to the page on Escape ----------

  bindFocus() {
    this.element.addEventListener("keydown", (event) => {
      if (event.target === this.element && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.focusMachine();
      }
    });
    // Capture phase: runs before the viewer's own key handlers on the canvas or textarea.
    this.element.addEventListener(
      "keydown",
      (event) => {
        if (event.key === "Escape" && !event.shiftKey && event.target !== this.element) {
          event.preventDefault();
          event.stopPropagation();
          this.releaseFocus();
        }
      },
      true,
    );
  }

  focusMachine() {}

  releaseFocus() {
    this.element.focus({ preventScroll: true });
  }

  async typeText() {
    throw new Error("Not implemented");
  }

  async sendInterrupt() {
    throw new Error("Not implemented");
  }

  // A view just shown connects by itself: a button that switched to it waits for that, briefly.
  async waitUntilConnected(ms = 15000) {
    const deadline = Date.now() + ms;
    while (!this.connected && this.running && this.state !== "blocked" && Date.now() < deadline) {
      await sleep(100);
    }
  }

  ensureConnected() {
    if (!this.connected) {
      throw new Error(`The ${this.label} of ${this.machine} is not connected: ${this.stateText}`);
    }
  }
}
