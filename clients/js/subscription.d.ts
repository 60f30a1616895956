/** @import { SubscriptionEvents } from "./types.js" */
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
 * What the client knows of one channel: every Subscription on it, whether a `chat.join`
 * made it (then it is rejoined rather than resubscribed), and the de-duplication cursor.
 * @internal
 */
export class ChannelState {
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
import type { SubscriptionEvents } from "./types.js";
import { Emitter } from "./emitter.js";
import { RealtimeError } from "./errors.js";
