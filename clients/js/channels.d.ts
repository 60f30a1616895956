/**
 * What the channels need of their client.
 * @internal
 * @typedef {object} ChannelsLink
 * @property {() => State} state
 * @property {(name: keyof ClientEvents, ...args: any[]) => void} emit The client's events.
 * @property {() => number} retryDelay ms before a refused resubscribe is tried again.
 */
export class Channels {
    /** @param {Requests} requests @param {ChannelsLink} link */
    constructor(requests: Requests, link: ChannelsLink);
    /**
     * A new hold on `channel` (see Client.subscribe).
     * @param {string} channel
     * @param {((event: RealtimeEvent) => void) | undefined} onEvent
     * @param {SubscribeOptions} options
     * @returns {Subscription}
     */
    subscribe(channel: string, onEvent: ((event: RealtimeEvent) => void) | undefined, options: SubscribeOptions): Subscription;
    /** A connection is open: subscribe every channel on it (watches after their room). */
    resubscribe(): void;
    /** The connection closed: nothing is subscribed until the next one. */
    disconnected(): void;
    /** The client closed: every subscription ends with `error`. */
    fail(error: RealtimeError): void;
    /** Rooms a `chat.join` opened are rejoined after a reconnect; `chat.leave` forgets them. */
    afterReply(type: string, fields: Record<string, any>, data: any): void;
    /** The gateway ended a subscription (`unsubscribed`, `chat.leave`). */
    unsubscribed(name: string, error: RealtimeError): void;
    /**
     * The gateway could not replay exactly what its own bus outage (or a join's catch-up)
     * missed: the same news as a resubscribe answered `recovered: false`.
     * @param {any} frame
     */
    onRecovery(frame: any): void;
    /** Hand one event to the client's and the channel's listeners, unless already delivered. */
    deliver(frame: RealtimeEvent): void;
    #private;
}
/**
 * What the channels need of their client.
 */
export type ChannelsLink = {
    state: () => State;
    /**
     * The client's events.
     */
    emit: (name: keyof ClientEvents, ...args: any[]) => void;
    /**
     * ms before a refused resubscribe is tried again.
     */
    retryDelay: () => number;
};
import type { RealtimeEvent } from "./types.js";
import type { SubscribeOptions } from "./types.js";
import { Subscription } from "./subscription.js";
import { RealtimeError } from "./errors.js";
import type { Requests } from "./requests.js";
import type { State } from "./types.js";
import type { ClientEvents } from "./types.js";
