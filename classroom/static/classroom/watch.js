// Read-only view of a student's terminal: the proxy's watch websocket sends the machine's output
// (from the student's own connection); this page sends nothing, and the server drops anything sent.
import { Terminal } from "xterm";
import { FitAddon } from "xterm/fit";

export function watchConsole({ instanceId, machine, kind, screen, status }) {
  screen.replaceChildren();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws/instances/${instanceId}/machines/${machine}/${kind}/watch`;
  const terminal = new Terminal({ disableStdin: true, scrollback: 2000, fontSize: 13, theme: { background: "#111111" } });
  const fit = new FitAddon();
  terminal.loadAddon(fit);
  terminal.open(screen);
  fit.fit();
  Object.defineProperty(screen, "terminal", { value: terminal, configurable: true });
  const socket = new WebSocket(url, ["binary"]);
  socket.binaryType = "arraybuffer";
  status.textContent = "Connecting…";
  socket.addEventListener("open", () => { status.textContent = "Watching (read-only)."; });
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") terminal.write(new Uint8Array(event.data));
  });
  socket.addEventListener("close", (event) => {
    status.textContent = event.reason || `Closed (${event.code}).`;
  });
  return {
    close() {
      socket.close();
      terminal.dispose();
    },
  };
}
