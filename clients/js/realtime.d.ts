/**
 * Connect to a gateway's `/ws`. Returns at once; see `client.ready` and the `state` event.
 * @param {string} url e.g. `ws://localhost:8000/ws`
 * @param {Options} options
 * @returns {Client}
 */
export function connect(url: string, options: Options): Client;
/**
 * Order of two positions: tuples of integers split on `-` (docs/protocol.md).
 * @param {string} a @param {string} b
 * @returns {number} negative, 0 or positive
 */
export function comparePositions(a: string, b: string): number;
/**
 * @module @realtime/client
 *
 * The browser (and Node) client of the realtime gateway: one dependency-free ES module that
 * speaks client protocol v1 (docs/protocol.md) and keeps a session alive across reconnects.
 * What it promises, and why, is docs/client.md.
 *
 * ```js
 * import { connect } from "/client/realtime.js";
 * const client = connect("ws://localhost:8000/ws", { token: async () => fetchToken() });
 * await client.ready;
 * const reply = await client.request("chat.join", { room: "general" });
 * ```
 */
export const VERSION: "0.1.0";
/**
 * Every refusal: a server error reply, or one of the client's own codes (`timeout`,
 * `connection_lost`, `queue_full`, `closed`, `unauthenticated`).
 */
export class RealtimeError extends Error {
    /** @param {{code?: string, message?: string}} error An `error` object of a reply. */
    static fromReply(error: {
        code?: string;
        message?: string;
    }): RealtimeError;
    /**
     * @param {string} code
     * @param {string} message
     * @param {Record<string, any>} [data] The error's other fields (e.g. `minimum`).
     */
    constructor(code: string, message: string, data?: Record<string, any>);
    /** @type {string} */
    code: string;
    /** @type {Record<string, any>} */
    data: Record<string, any>;
    /** @type {{type: string, data: Record<string, any>} | undefined} The request, key included. */
    request: {
        type: string;
        data: Record<string, any>;
    } | undefined;
}
/**
 * One caller's hold on a channel (see SubscriptionEvents).
 * @extends {Emitter<SubscriptionEvents>}
 */
export class Subscription extends Emitter<SubscriptionEvents> {
    /**
     * @param {ChannelState} channel
     * @param {(subscription: Subscription) => void} release
     */
    constructor(channel: ChannelState, release: (subscription: Subscription) => void);
    /** @type {Promise<Record<string, any>>} */
    ready: Promise<Record<string, any>>;
    /** @readonly */
    readonly channel: string;
    /** The position of the last event delivered on this channel (or of its reply). */
    get position(): string | null;
    /** False once unsubscribed, refused, or ended by the gateway. */
    get active(): boolean;
    /** Stop receiving this channel's events; the last holder unsubscribes the connection. */
    unsubscribe(): void;
    /** @internal @param {Record<string, any>} data */
    _subscribed(data: Record<string, any>): void;
    /** @internal @param {RealtimeError | null} error */
    _end(error: RealtimeError | null): void;
    /** @internal @param {keyof SubscriptionEvents} name @param {...any} args */
    _emit(name: keyof SubscriptionEvents, ...args: any[]): void;
    #private;
}
/**
 * One request awaiting its reply.
 * @internal
 * @typedef {object} Call
 * @property {string} type
 * @property {Record<string, any>} fields Everything but `type` and `ref`.
 * @property {(error: RealtimeError | null, data: any) => void} settle Called once, synchronously
 *   when the reply is read, so that state changes before the next frame is handled.
 * @property {boolean} retry Has an idempotency key: resent after a reconnect.
 * @property {number} deadline
 * @property {ReturnType<typeof setTimeout> | undefined} timer Its deadline.
 * @property {ReturnType<typeof setTimeout> | undefined} resend A resend after `service_unavailable`.
 * @property {number | null} ref
 */
/**
 * A connection to a gateway that reconnects until `close()`. Create it with `connect()`.
 * @extends {Emitter<ClientEvents>}
 */
export class Client extends Emitter<ClientEvents> {
    /** @param {string} url @param {Options} options */
    constructor(url: string, options: Options);
    /** @type {Promise<Welcome>} Resolves on the first welcome; rejects if closed before. */
    ready: Promise<Welcome>;
    /** @type {string | null} The authenticated user. */
    user: string | null;
    /** @type {string | null} The current connection's id (from the welcome). */
    connectionId: string | null;
    /** @returns {State} */
    get state(): State;
    /**
     * Send `<service>.<action>` (or any message type) and resolve with the reply's `data`.
     * Waits for a connection when there is none (bounded by `maxQueue` and the timeout).
     * @param {string} type
     * @param {Record<string, any>} [data] The request's fields.
     * @param {RequestOptions} [options]
     * @returns {Promise<any>}
     */
    request(type: string, data?: Record<string, any>, options?: RequestOptions): Promise<any>;
    /**
     * Follow one channel. Made at once when connected, else as soon as the client is.
     * Several subscriptions of one channel share the connection's subscription.
     * @param {string} channel
     * @param {(event: RealtimeEvent) => void} [onEvent]
     * @param {SubscribeOptions} [options]
     * @returns {Subscription}
     */
    subscribe(channel: string, onEvent?: (event: RealtimeEvent) => void, options?: SubscribeOptions): Subscription;
    /** Close for good: pending requests reject with `closed`, nothing reconnects. */
    close(): void;
    #private;
}
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
/**
 * One request awaiting its reply.
 */
export type Call = {
    type: string;
    /**
     * Everything but `type` and `ref`.
     */
    fields: Record<string, any>;
    /**
     * Called once, synchronously
     * when the reply is read, so that state changes before the next frame is handled.
     */
    settle: (error: RealtimeError | null, data: any) => void;
    /**
     * Has an idempotency key: resent after a reconnect.
     */
    retry: boolean;
    deadline: number;
    /**
     * Its deadline.
     */
    timer: ReturnType<typeof setTimeout> | undefined;
    /**
     * A resend after `service_unavailable`.
     */
    resend: ReturnType<typeof setTimeout> | undefined;
    ref: number | null;
};
/**
 * A minimal event emitter; a listener that throws is reported, never breaks the client.
 * @template {Record<string, (...args: any[]) => void>} Events
 */
declare class Emitter<Events extends Record<string, (...args: any[]) => void>> {
    /**
     * @template {keyof Events} K
     * @param {K} name
     * @param {Events[K]} listener
     * @returns {() => void} Removes the listener.
     */
    on<K extends keyof Events>(name: K, listener: Events[K]): () => void;
    /** @template {keyof Events} K @param {K} name @param {Events[K]} listener */
    off<K extends keyof Events>(name: K, listener: Events[K]): void;
    /** @protected @param {keyof Events} name @param {...any} args */
    protected emit(name: keyof Events, ...args: any[]): void;
    #private;
}
/**
 * What the client knows of one channel: every Subscription on it, whether a `chat.join`
 * made it (then it is rejoined rather than resubscribed), and the de-duplication cursor.
 * @internal
 */
declare class ChannelState {
    /** @param {string} name @param {string | null} since */
    constructor(name: string, since: string | null);
    name: string;
    /** The last position delivered; events not newer are duplicates. */
    position: string | null;
    /** @type {string | null} The room, when a chat.join holds this channel. */
    room: string | null;
    /** @type {Set<Subscription>} */
    holders: Set<Subscription>;
    /** Subscribed on the current connection (or its subscribe is in flight). */
    live: boolean;
    /** Its subscribe was answered on the current connection. */
    granted: boolean;
    /** Has been subscribed once: later subscribes are resubscribes. */
    subscribedBefore: boolean;
    /** @type {Record<string, any> | null} The reply that made it live. */
    reply: Record<string, any> | null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    retryTimer: ReturnType<typeof setTimeout> | undefined;
    /** Whether an event at `position` is new; advances the cursor when it is. */
    accept(position: string | null): boolean;
    /** Nobody holds it any more: the connection should unsubscribe. */
    get unheld(): boolean;
}
export {};
