// @ts-check
/**
 * The client's public types, as JSDoc only: no code, so nothing here is loaded at run time;
 * realtime.js re-exports each of them under the same name.
 * @module
 */

/** @import { RealtimeError } from "./errors.js" */

/**
 * @typedef {"connecting" | "open" | "reconnecting" | "closed"} State
 *
 * @typedef {object} RealtimeEvent One event of a channel (docs/protocol.md, `event`).
 * @property {string} channel
 * @property {string} event
 * @property {string | null} position Its place in the channel's history; null without history.
 * @property {any} data
 *
 * @typedef {object} Welcome
 * @property {string} user
 * @property {string} connection
 * @property {string} gateway
 *
 * @typedef {object} Disconnect
 * @property {number} code The WebSocket close code (1006 when the connection just dropped).
 * @property {string} reason
 *
 * @typedef {{ new (url: string): WebSocketLike }} WebSocketConstructor
 *
 * @typedef {object} WebSocketLike The part of the WHATWG WebSocket this module uses.
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {() => void} [terminate] `ws` only: drop at once, without a closing handshake.
 * @property {((event: any) => void) | null} onopen
 * @property {((event: any) => void) | null} onmessage
 * @property {((event: any) => void) | null} onclose
 * @property {((event: any) => void) | null} onerror
 *
 * @typedef {object} Options
 * @property {string | (() => string | Promise<string>)} token A JWT, or a function that
 *   gets a fresh one (called again after a 4401 and before the token's `exp`).
 * @property {WebSocketConstructor} [WebSocket] Default `globalThis.WebSocket`.
 * @property {number} [requestTimeout] ms a request may wait for its reply, queueing
 *   included (10000).
 * @property {number} [connectTimeout] ms from opening a socket to the welcome (10000).
 * @property {number} [pingInterval] ms without any frame before a `ping` is sent (15000).
 * @property {number} [pingTimeout] ms more without any frame before the connection is
 *   declared dead and replaced (10000).
 * @property {number} [backoffBase] ms, base of the exponential backoff (500).
 * @property {number} [backoffCap] ms, the longest wait between two attempts (30000).
 * @property {number} [slowDownFactor] base multiplier after 1013, 4408 and 4429 (4).
 * @property {number} [stableAfter] ms a connection must stay open for the backoff to
 *   start again from its base (30000).
 * @property {number | false} [refreshBefore] ms before `exp` to re-authenticate with a
 *   fresh token (60000, at most half the token's remaining life); false: never.
 * @property {number} [maxQueue] requests that may wait for a connection (256).
 * @property {number} [maxAuthFailures] refused tokens in a row before giving up (3).
 * @property {Record<string, string>} [idempotencyFields] request type -> the field holding
 *   its idempotency key; merged over `{"chat.send": "client_id", "bids.place": "key"}`.
 *
 * @typedef {object} RequestOptions
 * @property {number} [timeout] ms; default the client's `requestTimeout`.
 *
 * @typedef {object} SubscribeOptions
 * @property {string} [since] A position seen earlier: replay what came after it.
 *
 * @typedef {object} Recovery
 * @property {string} channel
 * @property {boolean} ok Whether the replay was complete (`recovered: true`).
 * @property {Record<string, any>} data The reply to the resubscribe (or rejoin).
 *
 * @typedef {object} Ended
 * @property {string} channel
 * @property {string} reason
 * @property {RealtimeError} error
 *
 * @typedef {object} ClientEvents
 * @property {(state: State) => void} state Every change of `client.state`.
 * @property {(event: RealtimeEvent) => void} event Every event of every channel, once, in order.
 * @property {(recovery: Recovery) => void} recovered After each resubscribe or rejoin.
 * @property {(ended: Ended) => void} unsubscribed A channel ended without `unsubscribe()`.
 * @property {(disconnect: Disconnect) => void} disconnect A connection closed.
 * @property {(error: RealtimeError) => void} error A problem the client works around.
 * @property {(expiring: Expiring) => void} expiring The gateway's `token_expiring` notice.
 *
 * @typedef {object} Expiring
 * @property {number} expiresAt When the connection's token expires, in seconds since the
 *   epoch (the token's `exp`).
 *
 * @typedef {object} SubscriptionEvents
 * @property {(event: RealtimeEvent) => void} event This channel's events, once, in order.
 * @property {(ok: boolean, data: Record<string, any>) => void} recovered After each
 *   resubscribe: false when something may be missing (reload the state).
 * @property {(error: RealtimeError | null) => void} end Once, unless ended by `unsubscribe()`.
 */

// A module, so that the typedefs above are its exports rather than globals.
export {};
