// @ts-check
/**
 * @module @realtime/client
 *
 * The browser (and Node) client of the realtime gateway: dependency-free ES modules that
 * speak client protocol v1 (docs/protocol.md) and keep a session alive across reconnects.
 * This one is the entry point and the whole public API; the modules it imports are loaded
 * relatively (`./client.js`, ...), so a browser needs no build step. What the client
 * promises, and why, is docs/client.md.
 *
 * ```js
 * import { connect } from "/client/realtime.js";
 * const client = connect("ws://localhost:8000/ws", { token: async () => fetchToken() });
 * await client.ready;
 * const reply = await client.request("chat.join", { room: "general" });
 * ```
 */

import { Client } from "./client.js";

export { Client } from "./client.js";
export { RealtimeError } from "./errors.js";
export { comparePositions } from "./positions.js";
export { Subscription } from "./subscription.js";

export const VERSION = "0.1.0";

// The public types, defined in types.js (and Call, in requests.js), exported here by name.
/**
 * @typedef {import("./types.js").State} State
 * @typedef {import("./types.js").RealtimeEvent} RealtimeEvent
 * @typedef {import("./types.js").Welcome} Welcome
 * @typedef {import("./types.js").Disconnect} Disconnect
 * @typedef {import("./types.js").WebSocketConstructor} WebSocketConstructor
 * @typedef {import("./types.js").WebSocketLike} WebSocketLike
 * @typedef {import("./types.js").Options} Options
 * @typedef {import("./types.js").RequestOptions} RequestOptions
 * @typedef {import("./types.js").SubscribeOptions} SubscribeOptions
 * @typedef {import("./types.js").Recovery} Recovery
 * @typedef {import("./types.js").Ended} Ended
 * @typedef {import("./types.js").ClientEvents} ClientEvents
 * @typedef {import("./types.js").Expiring} Expiring
 * @typedef {import("./types.js").SubscriptionEvents} SubscriptionEvents
 * @typedef {import("./requests.js").Call} Call
 */

/**
 * Connect to a gateway's `/ws`. Returns at once; see `client.ready` and the `state` event.
 * @param {string} url e.g. `ws://localhost:8000/ws`
 * @param {Options} options
 * @returns {Client}
 */
export function connect(url, options) {
  return new Client(url, options);
}
