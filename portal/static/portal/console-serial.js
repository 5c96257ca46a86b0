// A machine's serial console in xterm.js (npm @xterm/xterm 6, served from static/xterm/).
import { Terminal } from "xterm";
import { FitAddon } from "xterm/fit";
import { ConsoleView } from "./console-common.js";

const encoder = new TextEncoder();

export class SerialConsole extends ConsoleView {
  constructor(options) {
    super(options);
    this.terminal = null;
  }

  // Created on first use and kept across reconnects, so the scrollback survives a drop.
  ensureTerminal() {
    if (this.terminal) return this.terminal;
    const terminal = new Terminal({
      cursorBlink: true,
      fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace",
      fontSize: 14,
      scrollback: 5000,
      theme: { background: "#111111" },
    });
    this.fit = new FitAddon();
    terminal.loadAddon(this.fit);
    terminal.open(this.screen);
    terminal.onData((data) => this.send(data));
    // Escape returns to the page (handled on the wrapper); Shift+Escape reaches the machine as Esc.
    terminal.attachCustomKeyEventHandler((event) => !(event.key === "Escape" && !event.shiftKey));
    new ResizeObserver(() => this.resized()).observe(this.screen);
    // Tests and debugging read the buffer through the element.
    Object.defineProperty(this.element, "terminal", { value: terminal });
    this.terminal = terminal;
    return terminal;
  }

  resized() {
    if (this.terminal && this.screen.offsetWidth > 0 && this.screen.offsetHeight > 0) this.fit.fit();
    this.sendSize();
  }

  // A container's terminal (pods/exec) has a size; a serial line has none. The proxy takes the size
  // as a text frame and passes it on the exec stream's resize channel.
  sendSize() {
    if (this.kind !== "terminal" || !this.terminal) return;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ columns: this.terminal.cols, rows: this.terminal.rows }));
    }
  }

  attach(socket) {
    const terminal = this.ensureTerminal();
    this.resized();
    socket.binaryType = "arraybuffer";
    socket.addEventListener("open", () => {
      if (this.socket === socket) this.setState("connected", "Connected.");
      this.sendSize();
    });
    if (!this.sizeListener) {
      this.sizeListener = terminal.onResize(() => this.sendSize());
    }
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") terminal.write(new Uint8Array(event.data));
    });
  }

  send(data) {
    // Binary frames only: KubeVirt drops text frames.
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(encoder.encode(data));
  }

  focusMachine() {
    this.ensureTerminal().focus();
  }

  releaseFocus() {
    if (this.terminal) this.terminal.blur();
    super.releaseFocus();
  }

  async typeText(text) {
    this.ensureConnected();
    // A serial line ends with carriage return, as the Enter key sends it.
    this.send(text.replace(/\r?\n/g, "\r"));
  }

  async sendInterrupt() {
    this.ensureConnected();
    this.send("\x03"); // what Ctrl-C sends on a terminal
  }
}
