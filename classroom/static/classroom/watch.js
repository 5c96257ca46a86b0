// Read-only view of a student's terminal or screen: the proxy's watch websocket sends the machine's
// output from the student's own connection. The terminal sends nothing; noVNC in view-only mode
// sends only its handshake and requests (the proxy answers the handshake and drops the rest).
import RFB from "novnc/rfb";
import { Terminal } from "xterm";
import { FitAddon } from "xterm/fit";

function watchUrl(instanceId, machine, kind) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws/instances/${instanceId}/machines/${machine}/${kind}/watch`;
}

function closedText(event) {
  return event.reason || `Closed (${event.code}).`;
}

function watchScreen({ url, screen, status }) {
  const socket = new WebSocket(url, ["binary"]);
  socket.binaryType = "arraybuffer";
  const rfb = new RFB(screen, socket, { shared: true });
  rfb.viewOnly = true;
  rfb.scaleViewport = true;
  rfb.resizeSession = false;
  rfb.addEventListener("connect", () => { status.textContent = "Watching (read-only)."; });
  socket.addEventListener("close", (event) => { status.textContent = closedText(event); });
  return { close: () => rfb.disconnect() };
}

function watchTerminal({ url, screen, status }) {
  const terminal = new Terminal({ disableStdin: true, scrollback: 2000, fontSize: 13, theme: { background: "#111111" } });
  const fit = new FitAddon();
  terminal.loadAddon(fit);
  terminal.open(screen);
  fit.fit();
  Object.defineProperty(screen, "terminal", { value: terminal, configurable: true });
  const socket = new WebSocket(url, ["binary"]);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("open", () => { status.textContent = "Watching (read-only)."; });
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") terminal.write(new Uint8Array(event.data));
  });
  socket.addEventListener("close", (event) => { status.textContent = closedText(event); });
  return {
    close() {
      socket.close();
      terminal.dispose();
    },
  };
}

export function watchConsole({ instanceId, machine, kind, screen, status }) {
  screen.replaceChildren();
  status.textContent = "Connecting…";
  const url = watchUrl(instanceId, machine, kind);
  return kind === "vnc" ? watchScreen({ url, screen, status }) : watchTerminal({ url, screen, status });
}
