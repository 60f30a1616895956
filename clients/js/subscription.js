// @ts-check
/**
 * A caller's hold on a channel (Subscription), and what the client knows of the channel
 * that every hold on it shares (ChannelState).
 * @module
 */

import { Emitter } from "./emitter.js";
import { RealtimeError } from "./errors.js";
import { comparePositions } from "./positions.js";

/** @import { SubscriptionEvents } from "./types.js" */

/**
 * One caller's hold on a channel (see SubscriptionEvents).
 * @extends {Emitter<SubscriptionEvents>}
 */
export class Subscription extends Emitter {
  /** @type {Promise<Record<string, any>>} */
  ready;
  #resolve = /** @type {(data: Record<string, any>) => void} */ (() => {});
  #reject = /** @type {(error: Error) => void} */ (() => {});
  #release;
  #active = true;
  /** @type {ChannelState} */
  #channel;

  /**
   * @param {ChannelState} channel
   * @param {(subscription: Subscription) => void} release
   */
  constructor(channel, release) {
    super();
    /** @readonly */
    this.channel = channel.name;
    this.#channel = channel;
    this.#release = release;
    this.ready = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.ready.catch(() => {}); // awaiting `ready` is optional
  }

  /** The position of the last event delivered on this channel (or of its reply). */
  get position() {
    return this.#channel.position;
  }

  /** False once unsubscribed, refused, or ended by the gateway. */
  get active() {
    return this.#active;
  }

  /** Stop receiving this channel's events; the last holder unsubscribes the connection. */
  unsubscribe() {
    if (!this.#active) return;
    this.#active = false;
    this.#release(this);
    this.#reject(new RealtimeError("closed", "unsubscribed before the subscription was made"));
  }

  /** @internal @param {Record<string, any>} data */
  _subscribed(data) {
    this.#resolve(data);
  }

  /** @internal @param {RealtimeError | null} error */
  _end(error) {
    if (!this.#active) return;
    this.#active = false;
    this.#reject(error ?? new RealtimeError("closed", "the subscription ended"));
    this.emit("end", error);
  }

  /** @internal @param {keyof SubscriptionEvents} name @param {...any} args */
  _emit(name, ...args) {
    if (this.#active) this.emit(name, ...args);
  }
}

/**
 * What the client knows of one channel: every Subscription on it, whether a `chat.join`
 * made it (then it is rejoined rather than resubscribed), and the de-duplication cursor.
 * @internal
 */
export class ChannelState {
  /** @param {string} name @param {string | null} since */
  constructor(name, since) {
    this.name = name;
    /** The last position delivered; events not newer are duplicates. */
    this.position = since;
    /** @type {string | null} The room, when a chat.join holds this channel. */
    this.room = null;
    /** @type {Set<Subscription>} */
    this.holders = new Set();
    /** Subscribed on the current connection (or its subscribe is in flight). */
    this.live = false;
    /** Its subscribe was answered on the current connection. */
    this.granted = false;
    /** Has been subscribed once: later subscribes are resubscribes. */
    this.subscribedBefore = false;
    /** @type {Record<string, any> | null} The reply that made it live. */
    this.reply = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
  }

  /** Whether an event at `position` is new; advances the cursor when it is. */
  accept(/** @type {string | null} */ position) {
    if (position == null) return true;
    if (this.position != null && comparePositions(position, this.position) <= 0) return false;
    this.position = position;
    return true;
  }

  /** Nobody holds it any more: the connection should unsubscribe. */
  get unheld() {
    return this.room == null && this.holders.size === 0;
  }
}
