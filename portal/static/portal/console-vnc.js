// A machine's screen through noVNC (npm @novnc/novnc 1.7, served from static/novnc/).
import RFB from "novnc/rfb";
import { ConsoleView, sleep } from "./console-common.js";
import { XK_CONTROL_L, XK_C, XK_SHIFT_L, keystrokesFor } from "./keyboard-us.js";

// Between two typed keys: the guest (and QEMU's key queue) keeps up, and it still feels quick.
const KEY_INTERVAL_MS = 12;

export class VncConsole extends ConsoleView {
  attach(socket) {
    // noVNC takes our websocket (opened with the "binary" subprotocol the proxy accepts), so the
    // page sees the proxy's close codes itself.
    const rfb = new RFB(this.screen, socket, { shared: true });
    rfb.scaleViewport = true; // the whole screen, scaled to the pane
    rfb.resizeSession = false; // KubeVirt cannot resize the guest's screen
    rfb.focusOnClick = true;
    rfb.background = "#111";
    rfb.addEventListener("connect", () => {
      if (this.rfb === rfb) this.setState("connected", "Connected.");
    });
    rfb.addEventListener("securityfailure", (event) => {
      if (this.rfb === rfb) this.setState("blocked", `The screen refused the connection: ${event.detail.reason || "security failure"}.`);
    });
    this.rfb = rfb;
  }

  detach() {
    const rfb = this.rfb;
    this.rfb = null;
    if (rfb) {
      try {
        rfb.disconnect();
      } catch {
        // already disconnected
      }
    }
  }

  focusMachine() {
    if (this.rfb) this.rfb.focus({ preventScroll: true });
  }

  releaseFocus() {
    if (this.rfb) this.rfb.blur();
    super.releaseFocus();
  }

  // The canvas, for tests and screenshots.
  get canvas() {
    return this.screen.querySelector("canvas");
  }

  async typeText(text) {
    for (const { keysym, code, shift } of keystrokesFor(text)) {
      this.ensureConnected();
      const rfb = this.rfb;
      if (shift) rfb.sendKey(XK_SHIFT_L, "ShiftLeft", true);
      rfb.sendKey(keysym, code);
      if (shift) rfb.sendKey(XK_SHIFT_L, "ShiftLeft", false);
      await sleep(KEY_INTERVAL_MS);
    }
  }

  async sendInterrupt() {
    this.ensureConnected();
    const rfb = this.rfb;
    rfb.sendKey(XK_CONTROL_L, "ControlLeft", true);
    rfb.sendKey(XK_C, "KeyC");
    rfb.sendKey(XK_CONTROL_L, "ControlLeft", false);
  }
}
