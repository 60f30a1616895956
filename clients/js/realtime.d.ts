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
export function connect(url: string, options: Options): Client;
export { Client } from "./client.js";
export { RealtimeError } from "./errors.js";
export { comparePositions } from "./positions.js";
export { Subscription } from "./subscription.js";
export const VERSION: "0.1.0";
export type State = import("./types.js").State;
export type RealtimeEvent = import("./types.js").RealtimeEvent;
export type Welcome = import("./types.js").Welcome;
export type Disconnect = import("./types.js").Disconnect;
export type WebSocketConstructor = import("./types.js").WebSocketConstructor;
export type WebSocketLike = import("./types.js").WebSocketLike;
export type Options = import("./types.js").Options;
export type RequestOptions = import("./types.js").RequestOptions;
export type SubscribeOptions = import("./types.js").SubscribeOptions;
export type Recovery = import("./types.js").Recovery;
export type Ended = import("./types.js").Ended;
export type ClientEvents = import("./types.js").ClientEvents;
export type Expiring = import("./types.js").Expiring;
export type SubscriptionEvents = import("./types.js").SubscriptionEvents;
export type Call = import("./requests.js").Call;
import { Client } from "./client.js";
