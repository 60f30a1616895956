// @ts-check
/**
 * The outgoing requests of a client: refs, replies matched to them, deadlines, the queue of
 * requests waiting for a connection, and idempotency keys that make a retry safe.
 * @module
 */

import { RealtimeError } from "./errors.js";

/** @import { State, WebSocketLike } from "./types.js" */

const IDEMPOTENCY_FIELDS = { "chat.send": "client_id", "bids.place": "key" };

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
 * What the requests need of their client.
 * @internal
 * @typedef {object} RequestsLink
 * @property {() => WebSocketLike | null} socket The current connection, if any.
 * @property {() => State} state
 * @property {(error: RealtimeError) => void} error An error reply no request is waiting for.
 */

export class Requests {
  #options;
  /** @type {Record<string, string>} */
  #idempotencyFields;
  #link;
  #nextRef = 0;
  /** @type {Map<number, Call>} Sent on the current socket, by ref, oldest first. */
  #pending = new Map();
  /** @type {Call[]} Waiting for a connection. */
  #queue = [];

  /**
   * @param {{requestTimeout: number, maxQueue: number, backoffBase: number}} options
   * @param {Record<string, string> | undefined} idempotencyFields Merged over the defaults.
   * @param {RequestsLink} link
   */
  constructor(options, idempotencyFields, link) {
    this.#options = options;
    this.#idempotencyFields = { ...IDEMPOTENCY_FIELDS, ...idempotencyFields };
    this.#link = link;
  }

  /**
   * The fields with an idempotency key when the type has one and the caller gave none; a
   * copy, so a retry of the same call reuses the key.
   * @param {string} type @param {Record<string, any>} data
   */
  withIdempotencyKey(type, data) {
    const field = this.#idempotencyFields[type];
    if (field == null || data[field] != null) return { ...data };
    return { ...data, [field]: randomKey() };
  }

  /**
   * A request that reaches the current connection or waits for the next one.
   * @param {string} type @param {Record<string, any>} fields @param {number | undefined} timeout
   * @param {Call["settle"]} settle
   * @returns {Call}
   */
  call(type, fields, timeout, settle) {
    const wait = timeout ?? this.#options.requestTimeout;
    const retry = this.#idempotencyFields[type] != null;
    /** @type {Call} */
    const call = { type, fields, settle, retry, deadline: Date.now() + wait, timer: undefined, resend: undefined, ref: null };
    const state = this.#link.state();
    if (state === "closed") {
      settle(new RealtimeError("closed", "the client is closed"), null);
      return call;
    }
    call.timer = setTimeout(() => this.#expire(call), wait);
    if (state === "open") this.send(call);
    else if (this.#queue.length >= this.#options.maxQueue) {
      this.#settle(call, new RealtimeError("queue_full", `${this.#options.maxQueue} requests already wait for a connection`));
    } else this.#queue.push(call);
    return call;
  }

  /**
   * A message of the client's own on the current connection only: never queued, never
   * retried (it is redone on the next connection by whoever needs it).
   * @param {string} type @param {Record<string, any>} fields @param {Call["settle"]} settle
   * @returns {Call}
   */
  internal(type, fields, settle) {
    const timeout = this.#options.requestTimeout;
    /** @type {Call} */
    const call = { type, fields, settle, retry: false, deadline: Date.now() + timeout, timer: undefined, resend: undefined, ref: null };
    call.timer = setTimeout(() => this.#expire(call), timeout);
    return call;
  }

  /** @param {Call} call */
  send(call) {
    const socket = this.#link.socket();
    if (!socket) return;
    call.ref = ++this.#nextRef;
    this.#pending.set(call.ref, call);
    socket.send(JSON.stringify({ ...call.fields, type: call.type, ref: call.ref }));
  }

  /** A connection is open: send what waited for it, oldest first. */
  flush() {
    for (const call of this.#queue.splice(0)) this.send(call);
  }

  /** @param {any} frame A `welcome` or a `reply`. */
  onReply(frame) {
    const call = frame.ref == null ? null : this.#pending.get(frame.ref);
    if (frame.ref == null && frame.ok === false) return this.#onUnmatchedError(frame.error);
    if (!call) return; // expired already, or not ours
    if (frame.type === "welcome") return this.#settle(call, null, frame);
    if (frame.ok) return this.#settle(call, null, frame.data ?? {});
    const error = RealtimeError.fromReply(frame.error);
    if (call.retry && error.code === "service_unavailable" && this.#retryLater(call)) return;
    this.#settle(call, error);
  }

  /** Requests sent on a lost connection: retried when idempotent, else rejected. */
  connectionLost() {
    const retried = [];
    for (const call of this.#pending.values()) {
      call.ref = null;
      if (call.retry) retried.push(call);
      else this.#settle(call, new RealtimeError("connection_lost", `the connection dropped before the reply to ${call.type}`));
    }
    this.#pending.clear();
    this.#queue.unshift(...retried);
  }

  /** The client closed: every request, sent or waiting, fails with `error`. */
  fail(/** @type {RealtimeError} */ error) {
    for (const call of [...this.#pending.values(), ...this.#queue]) this.#settle(call, error);
    this.#pending.clear();
    this.#queue = [];
  }

  /** @param {Call} call @param {RealtimeError | null} error @param {any} [data] */
  #settle(call, error, data = null) {
    clearTimeout(call.timer);
    clearTimeout(call.resend);
    if (call.ref != null) this.#pending.delete(call.ref);
    call.ref = null;
    call.settle(error, data);
  }

  /** @param {Call} call */
  #expire(call) {
    const queued = this.#queue.indexOf(call);
    if (queued >= 0) this.#queue.splice(queued, 1);
    this.#settle(call, new RealtimeError("timeout", `no reply to ${call.type} in time`));
  }

  /**
   * An error with a null ref answers a frame whose ref the gateway could not read. The
   * gateway's rate limiter echoes refs (docs/protocol.md, `ref`), so a rate_limited one is
   * not expected from this client's frames; should one come, the oldest unanswered
   * message is taken as the one refused.
   * @param {any} error
   */
  #onUnmatchedError(error) {
    const realtimeError = RealtimeError.fromReply(error);
    const oldest = this.#pending.values().next().value;
    if (realtimeError.code === "rate_limited" && oldest) this.#settle(oldest, realtimeError);
    else this.#link.error(realtimeError);
  }

  /**
   * An idempotent request the service did not answer in time may still be handled: send it
   * again with the same key while its deadline allows, so the caller gets the one outcome.
   * @param {Call} call
   */
  #retryLater(call) {
    const delay = this.#options.backoffBase;
    if (Date.now() + delay >= call.deadline) return false;
    if (call.ref != null) this.#pending.delete(call.ref);
    call.ref = null;
    this.#queue.push(call);
    call.resend = setTimeout(() => {
      const queued = this.#queue.indexOf(call);
      if (queued >= 0 && this.#link.state() === "open") {
        this.#queue.splice(queued, 1);
        this.send(call);
      }
    }, delay);
    return true;
  }
}

/** A random idempotency key: 32 hex digits. */
function randomKey() {
  const bytes = new Uint8Array(16);
  const crypto = /** @type {any} */ (globalThis).crypto;
  if (crypto?.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
