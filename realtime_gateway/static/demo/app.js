// The demo's entry point: log in, connect, show the connection's state, start both views.
import { connect } from "/client/realtime.js";
import { startAuctions } from "./auctions.js";
import { startChat } from "./chat.js";
import { describeError, say } from "./ui.js";

const $ = (id) => document.getElementById(id);
const BADGE_TEXT = {
  connecting: "connecting…",
  open: "open",
  reconnecting: "reconnecting…",
  closed: "closed",
};

// The gateway marks its development mode in the page (no request needed to find out).
const dev = document.body.dataset.mode === "dev";

/** The gateway's WebSocket endpoint, on the host and scheme this page came from. */
function endpoint() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/** A fresh development token for `user` (asked again on every reconnect). */
async function devToken(user) {
  const response = await fetch(`/dev/token?user=${encodeURIComponent(user)}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body.token;
}

/** A visible note, for what happened to the connection (a recovery, or a failed one). */
function note(text, kind = "info") {
  say($("notice"), text, kind);
}

function showState(state) {
  const badge = $("badge");
  badge.dataset.state = state;
  badge.textContent = BADGE_TEXT[state] || state;
}

async function start(user, token) {
  const client = connect(endpoint(), { token });
  showState(client.state); // "connecting": the first state comes with no event
  let away = false;
  client.on("state", (state) => {
    showState(state);
    if (state === "reconnecting" && !away) {
      away = true;
      note("Connection lost: reconnecting…", "warning");
    } else if (state === "open" && away) {
      // Rooms and auctions say what they recovered after this (their own notes replace it).
      away = false;
      note("Reconnected.");
    } else if (state === "closed") {
      note("Disconnected for good: reload the page to sign in again.", "error");
    }
  });
  const welcome = await client.ready;
  const name = (welcome && welcome.user) || user;
  $("whoami").textContent = `signed in as ${name}`;
  $("login").hidden = true;
  $("app").hidden = false;
  const views = {
    chat: startChat(client, { user: name, note }),
    auctions: startAuctions(client, { user: name, note }),
  };
  // Reachable from the browser's console (and the tests) for a look at the connection.
  window.realtimeDemo = { client, ...views };
  return views;
}

function setUpLogin() {
  $(dev ? "login-dev" : "login-token").hidden = false;
  const input = $(dev ? "login-user" : "login-jwt");
  input.required = true;
  if (dev) input.value = localStorage.getItem("realtime-demo-user") || "";
  input.focus();
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    say($("login-error"), "");
    const button = $("login").querySelector("button");
    button.disabled = true;
    try {
      if (dev) localStorage.setItem("realtime-demo-user", value);
      const token = dev ? () => devToken(value) : async () => value;
      await start(dev ? value : null, token);
    } catch (failure) {
      say($("login-error"), `Could not connect: ${describeError(failure)}`, "error");
      button.disabled = false;
    }
  });
}

setUpLogin();
