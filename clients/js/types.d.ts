export type State = "connecting" | "open" | "reconnecting" | "closed";
/**
 * One event of a channel (docs/protocol.md, `event`).
 */
export type RealtimeEvent = {
    channel: string;
    event: string;
    /**
     * Its place in the channel's history; null without history.
     */
    position: string | null;
    data: any;
};
export type Welcome = {
    user: string;
    connection: string;
    gateway: string;
};
export type Disconnect = {
    /**
     * The WebSocket close code (1006 when the connection just dropped).
     */
    code: number;
    reason: string;
};
export type WebSocketConstructor = {
    new (url: string): WebSocketLike;
};
/**
 * The part of the WHATWG WebSocket this module uses.
 */
export type WebSocketLike = {
    readyState: number;
    send: (data: string) => void;
    close: (code?: number, reason?: string) => void;
    /**
     * `ws` only: drop at once, without a closing handshake.
     */
    terminate?: (() => void) | undefined;
    onopen: ((event: any) => void) | null;
    onmessage: ((event: any) => void) | null;
    onclose: ((event: any) => void) | null;
    onerror: ((event: any) => void) | null;
};
export type Options = {
    /**
     * A JWT, or a function that
     * gets a fresh one (called again after a 4401 and before the token's `exp`).
     */
    token: string | (() => string | Promise<string>);
    /**
     * Default `globalThis.WebSocket`.
     */
    WebSocket?: WebSocketConstructor | undefined;
    /**
     * ms a request may wait for its reply, queueing
     * included (10000).
     */
    requestTimeout?: number | undefined;
    /**
     * ms from opening a socket to the welcome (10000).
     */
    connectTimeout?: number | undefined;
    /**
     * ms without any frame before a `ping` is sent (15000).
     */
    pingInterval?: number | undefined;
    /**
     * ms more without any frame before the connection is
     * declared dead and replaced (10000).
     */
    pingTimeout?: number | undefined;
    /**
     * ms, base of the exponential backoff (500).
     */
    backoffBase?: number | undefined;
    /**
     * ms, the longest wait between two attempts (30000).
     */
    backoffCap?: number | undefined;
    /**
     * base multiplier after 1013, 4408 and 4429 (4).
     */
    slowDownFactor?: number | undefined;
    /**
     * ms a connection must stay open for the backoff to
     * start again from its base (30000).
     */
    stableAfter?: number | undefined;
    /**
     * ms before `exp` to re-authenticate with a
     * fresh token (60000, at most half the token's remaining life); false: never.
     */
    refreshBefore?: number | false | undefined;
    /**
     * requests that may wait for a connection (256).
     */
    maxQueue?: number | undefined;
    /**
     * refused tokens in a row before giving up (3).
     */
    maxAuthFailures?: number | undefined;
    /**
     * request type -> the field holding
     * its idempotency key; merged over `{"chat.send": "client_id", "bids.place": "key"}`.
     */
    idempotencyFields?: Record<string, string> | undefined;
};
export type RequestOptions = {
    /**
     * ms; default the client's `requestTimeout`.
     */
    timeout?: number | undefined;
};
export type SubscribeOptions = {
    /**
     * A position seen earlier: replay what came after it.
     */
    since?: string | undefined;
};
export type Recovery = {
    channel: string;
    /**
     * Whether the replay was complete (`recovered: true`).
     */
    ok: boolean;
    /**
     * The reply to the resubscribe (or rejoin).
     */
    data: Record<string, any>;
};
export type Ended = {
    channel: string;
    reason: string;
    error: RealtimeError;
};
export type ClientEvents = {
    /**
     * Every change of `client.state`.
     */
    state: (state: State) => void;
    /**
     * Every event of every channel, once, in order.
     */
    event: (event: RealtimeEvent) => void;
    /**
     * After each resubscribe or rejoin.
     */
    recovered: (recovery: Recovery) => void;
    /**
     * A channel ended without `unsubscribe()`.
     */
    unsubscribed: (ended: Ended) => void;
    /**
     * A connection closed.
     */
    disconnect: (disconnect: Disconnect) => void;
    /**
     * A problem the client works around.
     */
    error: (error: RealtimeError) => void;
    /**
     * The gateway's `token_expiring` notice.
     */
    expiring: (expiring: Expiring) => void;
};
export type Expiring = {
    /**
     * When the connection's token expires, in seconds since the
     * epoch (the token's `exp`).
     */
    expiresAt: number;
};
export type SubscriptionEvents = {
    /**
     * This channel's events, once, in order.
     */
    event: (event: RealtimeEvent) => void;
    /**
     * After each
     * resubscribe: false when something may be missing (reload the state).
     */
    recovered: (ok: boolean, data: Record<string, any>) => void;
    /**
     * Once, unless ended by `unsubscribe()`.
     */
    end: (error: RealtimeError | null) => void;
};
import type { RealtimeError } from "./errors.js";
