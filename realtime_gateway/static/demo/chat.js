// The chat view: a room list, one joined room at a time with its history, live messages,
// typing and who is here. Messages are keyed by position, so an event that arrives twice
// (a replay overlapping what the page has) is shown once, and kept in position order.
import { clock, describeError, el, say } from "./ui.js";

const DEFAULT_ROOMS = ["general", "random"];
const TYPING_SHOWN_MS = 3000;
const TYPING_SENT_EVERY_MS = 2000; // the service keeps one typing event per 2 s anyway
const HISTORY_PAGE = 50;

/** Positions are "<ms>-<seq>": compare them as pairs of integers. */
export function comparePositions(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

export function startChat(client, { user, note }) {
  const $ = (id) => document.getElementById(id);
  const roomsKey = `realtime-demo-rooms:${user}`;
  const known = new Set([...DEFAULT_ROOMS, ...JSON.parse(localStorage.getItem(roomsKey) || "[]")]);
  let room = null; // {name, channel, presence, positions: Map<position, li>, typing: Map}
  let lastTypingSent = 0;

  const error = (text) => say($("chat-error"), text, "error");

  function remember(name) {
    known.add(name);
    localStorage.setItem(roomsKey, JSON.stringify([...known].filter((n) => !DEFAULT_ROOMS.includes(n))));
    renderRooms();
  }

  function renderRooms() {
    $("room-list").replaceChildren(
      ...[...known].sort().map((name) =>
        el("li", {},
          el("button", {
            type: "button",
            class: "room-button",
            "aria-current": room && room.name === name ? "true" : null,
            onclick: () => enter(name),
            text: `# ${name}`,
          })),
      ),
    );
  }

  function messageItem(message) {
    return el("li", { class: message.user === user ? "message mine" : "message", "data-position": message.position },
      el("span", { class: "meta" }, el("strong", { text: message.user }), ` ${clock(message.ts)}`),
      el("span", { class: "text", text: message.text }),
    );
  }

  /** Add messages (any order, duplicates allowed) where their positions say they belong. */
  function addMessages(messages) {
    const list = $("messages");
    for (const message of messages) {
      if (!room || room.positions.has(message.position)) continue;
      const item = messageItem(message);
      room.positions.set(message.position, item);
      // Usually the newest: walk back from the end to find its place.
      let after = list.lastElementChild;
      while (after && comparePositions(after.dataset.position, message.position) > 0) {
        after = after.previousElementSibling;
      }
      if (after) after.after(item);
      else list.prepend(item);
    }
  }

  function renderTyping() {
    const names = room ? [...room.typing.keys()] : [];
    $("typing").textContent =
      names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
  }

  function renderPresence(users) {
    $("present").replaceChildren(
      ...[...users].sort().map((name) => el("li", { text: name === user ? `${name} (you)` : name })),
    );
  }

  async function loadPresence() {
    if (!room) return;
    const current = room;
    const reply = await client.request("presence.list", { channel: current.channel });
    if (room !== current) return;
    current.present = new Set(reply.users.map((entry) => entry.user));
    renderPresence(current.present);
  }

  function onPresence(event) {
    if (!room || event.channel !== `presence:${room.channel}`) return;
    if (event.event === "join") room.present.add(event.data.user);
    if (event.event === "leave") room.present.delete(event.data.user);
    renderPresence(room.present);
  }

  function onEvent(event) {
    if (!room || event.channel !== room.channel) return;
    if (event.event === "message") {
      addMessages([{ ...event.data, position: event.position }]);
      room.typing.delete(event.data.user);
      renderTyping();
    } else if (event.event === "typing" && event.data.user !== user) {
      clearTimeout(room.typing.get(event.data.user));
      const name = event.data.user;
      const current = room;
      current.typing.set(name, setTimeout(() => {
        current.typing.delete(name);
        if (room === current) renderTyping();
      }, TYPING_SHOWN_MS));
      renderTyping();
    }
  }

  /** Watch joins and leaves, then read the list: events after the list's reply are newer
   * than the list (docs/presence.md, "A consistent view"). */
  async function watchPresence() {
    const current = room;
    current.presence = client.subscribe(`presence:${current.channel}`, onPresence);
    // After a reconnect joins and leaves were missed (presence keeps no history): read the
    // list again once the watch is back.
    current.presence.on("recovered", () => {
      loadPresence().catch((failure) => error(`Could not read who is here: ${describeError(failure)}`));
    });
    await loadPresence();
  }

  async function leave() {
    if (!room) return;
    const current = room;
    room = null;
    current.presence.unsubscribe();
    for (const timer of current.typing.values()) clearTimeout(timer);
    $("room").hidden = true;
    renderRooms();
    await client.request("chat.leave", { room: current.name });
  }

  async function enter(name) {
    error("");
    if (room && room.name === name) return;
    try {
      await leave();
      const reply = await client.request("chat.join", { room: name });
      room = {
        name,
        channel: reply.channel,
        positions: new Map(),
        typing: new Map(),
        present: new Set(),
        presence: null,
      };
      remember(name);
      $("room-title").textContent = `# ${name}${reply.private ? " (private)" : ""}`;
      $("messages").replaceChildren();
      $("typing").textContent = "";
      renderPresence([]);
      $("room").hidden = false;
      addMessages(reply.messages);
      $("older").hidden = reply.messages.length < HISTORY_PAGE;
      await watchPresence();
      $("message").focus();
    } catch (failure) {
      error(`Could not join ${name}: ${describeError(failure)}`);
    }
  }

  async function older() {
    if (!room) return;
    const current = room;
    const oldest = $("messages").firstElementChild;
    const request = { room: current.name, limit: HISTORY_PAGE };
    if (oldest) request.before = oldest.dataset.position;
    try {
      const reply = await client.request("chat.history", request);
      if (room !== current) return;
      addMessages(reply.messages);
      $("older").hidden = !reply.more;
    } catch (failure) {
      error(`Could not load older messages: ${describeError(failure)}`);
    }
  }

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("join-room").value.trim();
    $("join-room").value = "";
    if (name) enter(name);
  });

  $("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("create-room").value.trim();
    const members = $("create-members").value.split(",").map((m) => m.trim()).filter(Boolean);
    try {
      await client.request("chat.create", { room: name, private: true, members });
      $("create-room").value = "";
      $("create-members").value = "";
      await enter(name);
    } catch (failure) {
      error(`Could not create ${name}: ${describeError(failure)}`);
    }
  });

  $("send-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!room) return;
    const input = $("message");
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    try {
      // The library adds the client_id, and sends the same one again if it has to retry.
      await client.request("chat.send", { room: room.name, text });
    } catch (failure) {
      input.value = text; // give the text back so that nothing typed is lost
      error(`Not sent: ${describeError(failure)}`);
    }
  });

  $("message").addEventListener("input", () => {
    const now = Date.now();
    if (!room || now - lastTypingSent < TYPING_SENT_EVERY_MS) return;
    lastTypingSent = now;
    client.request("chat.typing", { room: room.name }).catch(() => {}); // best effort
  });

  $("leave").addEventListener("click", () => leave().catch((failure) => error(describeError(failure))));
  $("older").addEventListener("click", older);

  // The library rejoins the room after a reconnect, with `since`; the missed messages
  // follow this as events. Without a full replay, start the room afresh from those.
  function onRecovered({ channel, ok, data }) {
    if (!room || channel !== room.channel) return;
    // The library resubscribes before it rejoins rooms, so the gateway refuses the watch of
    // a room's presence (allowed only while in the room), and it ends: watch it again now.
    if (!room.presence.active) {
      watchPresence().catch((failure) => error(`Could not read who is here: ${describeError(failure)}`));
    }
    const missed = (data && data.messages ? data.messages : []).length;
    if (ok) {
      note(`Reconnected: ${missed} missed message${missed === 1 ? "" : "s"} recovered in #${room.name}.`);
    } else {
      room.positions.clear();
      $("messages").replaceChildren();
      $("older").hidden = false;
      note(`Reconnected, but #${room.name}'s history no longer reached back: showing its newest messages.`, "warning");
    }
  }

  client.on("event", onEvent);
  client.on("recovered", onRecovered);
  renderRooms();

  return { enter };
}
