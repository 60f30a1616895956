// @ts-check
/**
 * The channels of a client: subscribing (or rejoining) them on each connection with `since`,
 * de-duplicating their events, the presence watches that wait for their room, and how each
 * ends.
 * @module
 */

import { RealtimeError, TRANSIENT } from "./errors.js";
import { ChannelState, Subscription } from "./subscription.js";

/** @import { Requests } from "./requests.js" */
/** @import { ClientEvents, RealtimeEvent, State, SubscribeOptions } from "./types.js" */

/** The presence watch of channel `C` is `presence:C` (docs/presence.md). */
const PRESENCE_PREFIX = "presence:";

/**
 * What the channels need of their client.
 * @internal
 * @typedef {object} ChannelsLink
 * @property {() => State} state
 * @property {(name: keyof ClientEvents, ...args: any[]) => void} emit The client's events.
 * @property {() => number} retryDelay ms before a refused resubscribe is tried again.
 */

export class Channels {
  /** @type {Map<string, ChannelState>} */
  #channels = new Map();
  /** Channels unsubscribed on this connection: events still in flight are dropped. */
  #ended = new Set();
  #requests;
  #link;

  /** @param {Requests} requests @param {ChannelsLink} link */
  constructor(requests, link) {
    this.#requests = requests;
    this.#link = link;
  }

  /**
   * A new hold on `channel` (see Client.subscribe).
   * @param {string} channel
   * @param {((event: RealtimeEvent) => void) | undefined} onEvent
   * @param {SubscribeOptions} options
   * @returns {Subscription}
   */
  subscribe(channel, onEvent, options) {
    let state = this.#channels.get(channel);
    const fresh = !state;
    if (!state) {
      state = new ChannelState(channel, options.since ?? null);
      this.#channels.set(channel, state);
      this.#ended.delete(channel);
    }
    const subscription = new Subscription(state, (held) => this.#release(channel, held));
    if (onEvent) subscription.on("event", onEvent);
    if (this.#link.state() === "closed") {
      this.#channels.delete(channel);
      subscription._end(new RealtimeError("closed", "the client is closed"));
      return subscription;
    }
    state.holders.add(subscription);
    if (state.reply && state.live) subscription._subscribed(state.reply);
    else if (fresh && this.#link.state() === "open" && !this.#awaitsWatched(state)) this.#subscribeChannel(state);
    return subscription;
  }

  /** A connection is open: subscribe every channel on it (watches after their room). */
  resubscribe() {
    for (const channel of this.#channels.values()) {
      if (!this.#awaitsWatched(channel)) this.#subscribeChannel(channel);
    }
  }

  /** The connection closed: nothing is subscribed until the next one. */
  disconnected() {
    for (const channel of this.#channels.values()) {
      channel.live = false;
      channel.granted = false;
      clearTimeout(channel.retryTimer);
    }
    this.#ended.clear();
  }

  /** The client closed: every subscription ends with `error`. */
  fail(/** @type {RealtimeError} */ error) {
    for (const channel of this.#channels.values()) {
      clearTimeout(channel.retryTimer);
      for (const holder of channel.holders) holder._end(error);
    }
    this.#channels.clear();
  }

  /** Rooms a `chat.join` opened are rejoined after a reconnect; `chat.leave` forgets them. */
  afterReply(/** @type {string} */ type, /** @type {Record<string, any>} */ fields, /** @type {any} */ data) {
    if (type === "chat.join" && typeof data?.channel === "string") this.#joined(data);
    if (type === "chat.leave" && typeof data?.channel === "string") {
      this.unsubscribed(data.channel, new RealtimeError("left", `left the room ${fields.room}`));
    }
  }

  /** @param {Record<string, any>} data A chat.join reply the caller asked for. */
  #joined(data) {
    let channel = this.#channels.get(data.channel);
    if (!channel) {
      channel = new ChannelState(data.channel, null);
      this.#channels.set(data.channel, channel);
    }
    // Positions up to the reply's are in its messages: only newer events are new.
    if (!channel.live) channel.position = data.position ?? null;
    channel.room = data.room;
    channel.live = channel.granted = channel.subscribedBefore = true;
    channel.reply = data;
    this.#ended.delete(data.channel);
    for (const holder of channel.holders) holder._subscribed(data);
    this.#subscribeWatch(channel);
  }

  /**
   * Whether `channel` is the presence watch (`presence:<name>`) of a channel this client also
   * holds and whose subscribe is not answered yet: the gateway allows the watch of a room
   * only to the room's subscribers, so after a reconnect it follows the rejoin.
   */
  #awaitsWatched(/** @type {ChannelState} */ channel) {
    if (!channel.name.startsWith(PRESENCE_PREFIX)) return false;
    const watched = this.#channels.get(channel.name.slice(PRESENCE_PREFIX.length));
    return watched != null && !watched.granted;
  }

  /** The watch that waited for `channel`'s answer, subscribed now (or refused, if it must be). */
  #subscribeWatch(/** @type {ChannelState} */ channel) {
    const watch = this.#channels.get(PRESENCE_PREFIX + channel.name);
    if (watch && !watch.live && this.#link.state() === "open") this.#subscribeChannel(watch);
  }

  /** Subscribe (or rejoin) one channel on the current connection, with `since` if known. */
  #subscribeChannel(/** @type {ChannelState} */ channel) {
    clearTimeout(channel.retryTimer);
    channel.live = true;
    const since = channel.position;
    const room = channel.room;
    const [type, fields] = room != null
      ? ["chat.join", { room, ...(since != null && { since }) }]
      : ["subscribe", { channel: channel.name, ...(since != null && { since }) }];
    this.#requests.send(this.#requests.internal(type, fields, (error, data) => {
      if (this.#channels.get(channel.name) !== channel || !channel.live) return;
      if (error) this.#onSubscribeRefused(channel, error);
      else this.#onSubscribed(channel, since, data);
    }));
  }

  /**
   * @param {ChannelState} channel
   * @param {string | null} since
   * @param {Record<string, any>} data
   */
  #onSubscribed(channel, since, data) {
    const resubscribe = channel.subscribedBefore;
    channel.subscribedBefore = true;
    channel.granted = true;
    channel.reply = data;
    if (since == null && !resubscribe) channel.position = data.position ?? null;
    for (const holder of channel.holders) holder._subscribed(data);
    if (resubscribe || since != null) {
      const ok = data.recovered === true;
      // Not recovered: what follows starts afresh, in order, whatever its positions.
      if (!ok) channel.position = null;
      for (const holder of channel.holders) holder._emit("recovered", ok, data);
      this.#link.emit("recovered", { channel: channel.name, ok, data });
    }
    // A rejoin's missed messages come in its reply: deliver them as the events they were.
    for (const message of channel.room != null && resubscribe ? data.messages ?? [] : []) {
      const { position, ...fields } = message;
      this.deliver({ channel: channel.name, event: "message", position, data: fields });
    }
    this.#subscribeWatch(channel);
  }

  /** @param {ChannelState} channel @param {RealtimeError} error */
  #onSubscribeRefused(channel, error) {
    if (error.code === "connection_lost") return; // resubscribed on the next connection
    if (channel.subscribedBefore && TRANSIENT.has(error.code)) {
      channel.live = false;
      channel.retryTimer = setTimeout(() => {
        if (this.#link.state() === "open" && this.#channels.get(channel.name) === channel) this.#subscribeChannel(channel);
      }, this.#link.retryDelay());
      return;
    }
    this.#channels.delete(channel.name);
    for (const holder of channel.holders) holder._end(error);
    this.#link.emit("unsubscribed", { channel: channel.name, reason: error.message, error });
    this.#subscribeWatch(channel);
  }

  /** The last holder of a channel let go. */
  #release(/** @type {string} */ name, /** @type {Subscription} */ holder) {
    const channel = this.#channels.get(name);
    if (!channel || !channel.holders.delete(holder) || !channel.unheld) return;
    this.#channels.delete(name);
    clearTimeout(channel.retryTimer);
    if (channel.live && this.#link.state() === "open") {
      this.#ended.add(name);
      this.#requests.send(this.#requests.internal("unsubscribe", { channel: name }, () => {}));
    }
    this.#subscribeWatch(channel);
  }

  /** The gateway ended a subscription (`unsubscribed`, `chat.leave`). */
  unsubscribed(/** @type {string} */ name, /** @type {RealtimeError} */ error) {
    const channel = this.#channels.get(name);
    this.#ended.add(name);
    if (!channel) return;
    this.#channels.delete(name);
    clearTimeout(channel.retryTimer);
    for (const holder of channel.holders) holder._end(error);
    this.#link.emit("unsubscribed", { channel: name, reason: error.message, error });
    this.#subscribeWatch(channel);
  }

  /**
   * The gateway could not replay exactly what its own bus outage (or a join's catch-up)
   * missed: the same news as a resubscribe answered `recovered: false`.
   * @param {any} frame
   */
  onRecovery(frame) {
    const channel = this.#channels.get(frame.channel);
    if (!channel) return;
    channel.position = null; // what follows starts afresh, in order, whatever its positions
    const data = { position: frame.position ?? null, recovered: false };
    for (const holder of channel.holders) holder._emit("recovered", false, data);
    this.#link.emit("recovered", { channel: channel.name, ok: false, data });
  }

  /** Hand one event to the client's and the channel's listeners, unless already delivered. */
  deliver(/** @type {RealtimeEvent} */ frame) {
    const channel = this.#channels.get(frame.channel);
    if (channel ? !channel.accept(frame.position) : this.#ended.has(frame.channel)) return;
    const event = { channel: frame.channel, event: frame.event, position: frame.position ?? null, data: frame.data };
    this.#link.emit("event", event);
    for (const holder of channel?.holders ?? []) holder._emit("event", event);
  }
}
