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
import type { ClientEvents } from "./types.js";
import { Emitter } from "./emitter.js";
import type { Welcome } from "./types.js";
import type { State } from "./types.js";
import type { RequestOptions } from "./types.js";
import type { RealtimeEvent } from "./types.js";
import type { SubscribeOptions } from "./types.js";
import type { Subscription } from "./subscription.js";
import type { Options } from "./types.js";
