// Text as key presses on a US keyboard, for typing into a VM's screen (KubeVirt's VNC has no
// clipboard). Each stroke has the X keysym and the physical key (`code`): QEMU takes the key from
// `code` (QEMU extended key events), so characters that need Shift on a US layout say so.
import keysyms from "novnc/keysymdef";

export const XK_SHIFT_L = 0xffe1;
export const XK_CONTROL_L = 0xffe3;
export const XK_C = 0x0063; // "c": with Control held, Ctrl-C
const XK_RETURN = 0xff0d;
const XK_TAB = 0xff09;

const PLAIN = {
  " ": "Space", "-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight",
  "\\": "Backslash", ";": "Semicolon", "'": "Quote", ",": "Comma", ".": "Period",
  "/": "Slash", "`": "Backquote",
};
const SHIFTED = {
  "!": "Digit1", "@": "Digit2", "#": "Digit3", "$": "Digit4", "%": "Digit5", "^": "Digit6",
  "&": "Digit7", "*": "Digit8", "(": "Digit9", ")": "Digit0", "_": "Minus", "+": "Equal",
  "{": "BracketLeft", "}": "BracketRight", "|": "Backslash", ":": "Semicolon", '"': "Quote",
  "<": "Comma", ">": "Period", "?": "Slash", "~": "Backquote",
};

function stroke(char) {
  const keysym = char.codePointAt(0);
  if (char >= "a" && char <= "z") return { keysym, code: `Key${char.toUpperCase()}`, shift: false };
  if (char >= "A" && char <= "Z") return { keysym, code: `Key${char}`, shift: true };
  if (char >= "0" && char <= "9") return { keysym, code: `Digit${char}`, shift: false };
  if (char in PLAIN) return { keysym, code: PLAIN[char], shift: false };
  if (char in SHIFTED) return { keysym, code: SHIFTED[char], shift: true };
  // Anything else: the keysym alone; the VM's keyboard map decides (no physical key to press).
  return { keysym: keysyms.lookup(keysym), code: null, shift: false };
}

// Newlines (\n, \r\n or \r) become Enter, tabs Tab.
export function keystrokesFor(text) {
  const strokes = [];
  for (const char of text.replace(/\r\n?/g, "\n")) {
    if (char === "\n") strokes.push({ keysym: XK_RETURN, code: "Enter", shift: false });
    else if (char === "\t") strokes.push({ keysym: XK_TAB, code: "Tab", shift: false });
    else strokes.push(stroke(char));
  }
  return strokes;
}
