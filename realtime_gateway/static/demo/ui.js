// Small DOM and formatting helpers shared by the demo's views. No framework: each view
// builds its elements with el() and updates them in place.

/** An element with attributes (`class`, `for`, `aria-*`, `data-*`, `on<event>`) and children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      node.textContent = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** Money is integer minor units (cents) on the wire; people read and type decimals. */
export function money(cents) {
  return (cents / 100).toFixed(2);
}

/** The cents a typed amount means, or null when it is not a positive amount. */
export function toCents(text) {
  const value = Number(String(text).trim().replace(",", "."));
  if (!Number.isFinite(value) || value <= 0) return null;
  return Math.round(value * 100);
}

/** "2:05", "1:02:05" or "ended": what is left until `endsAt` (ms since the epoch). */
export function timeLeft(endsAt, now = Date.now()) {
  const total = Math.ceil((endsAt - now) / 1000);
  if (total <= 0) return "ended";
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

/** "14:03:27" for a time in ms since the epoch. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** Show `text` in a status element; an empty text hides it. */
export function say(node, text, kind = "info") {
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = !text;
}

/** The readable form of a rejected request (the library's Error carries `.code`). */
export function describeError(error) {
  return error && error.code ? `${error.message} (${error.code})` : String(error && error.message ? error.message : error);
}
