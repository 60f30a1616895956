// @ts-check
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

export const VERSION = "0.1.0";

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

/** @type {Required<Omit<Options, "token" | "WebSocket" | "idempotencyFields">>} */
const DEFAULTS = {
  requestTimeout: 10_000,
  connectTimeout: 10_000,
  pingInterval: 15_000,
  pingTimeout: 10_000,
  backoffBase: 500,
  backoffCap: 30_000,
  slowDownFactor: 4,
  stableAfter: 30_000,
  refreshBefore: 60_000,
  maxQueue: 256,
  maxAuthFailures: 3,
};

// The close-code table of docs/protocol.md, as the client acts on it.
const NO_RECONNECT = new Set([1000, 1008, 1009, 4403]);
const SLOW_DOWN = new Set([1013, 4408, 4429]);
const SERVICE_RESTART = 1012;
const UNAUTHENTICATED = 4401;
// A code of the private range for connections the client gives up on itself.
const CLIENT_DROP = 4000;
// A cached token with less life than this (ms) is not worth connecting with.
const MIN_TOKEN_LIFE = 5_000;

const IDEMPOTENCY_FIELDS = { "chat.send": "client_id", "bids.place": "key" };

/** Error codes after which a resubscribe is tried again on the same connection. */
const TRANSIENT = new Set(["service_unavailable", "rate_limited", "internal_error"]);

/** The presence watch of channel `C` is `presence:C` (docs/presence.md). */
const PRESENCE_PREFIX = "presence:";

/**
 * Every refusal: a server error reply, or one of the client's own codes (`timeout`,
 * `connection_lost`, `queue_full`, `closed`, `unauthenticated`).
 */
export class RealtimeError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {Record<string, any>} [data] The error's other fields (e.g. `minimum`).
   */
  constructor(code, message, data = {}) {
    super(message);
    this.name = "RealtimeError";
    /** @type {string} */
    this.code = code;
    /** @type {Record<string, any>} */
    this.data = data;
    /** @type {{type: string, data: Record<string, any>} | undefined} The request, key included. */
    this.request = undefined;
  }

  /** @param {{code?: string, message?: string}} error An `error` object of a reply. */
  static fromReply(error) {
    const { code = "internal_error", message = code, ...data } = error ?? {};
    return new RealtimeError(code, message, data);
  }
}

/**
 * A minimal event emitter; a listener that throws is reported, never breaks the client.
 * @template {Record<string, (...args: any[]) => void>} Events
 */
class Emitter {
  /** @type {Map<keyof Events, Set<Function>>} */
  #listeners = new Map();

  /**
   * @template {keyof Events} K
   * @param {K} name
   * @param {Events[K]} listener
   * @returns {() => void} Removes the listener.
   */
  on(name, listener) {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => this.off(name, listener);
  }

  /** @template {keyof Events} K @param {K} name @param {Events[K]} listener */
  off(name, listener) {
    this.#listeners.get(name)?.delete(listener);
  }

  /** @protected @param {keyof Events} name @param {...any} args */
  emit(name, ...args) {
    for (const listener of [...(this.#listeners.get(name) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        console.error(`realtime: a '${String(name)}' listener threw`, error);
      }
    }
  }
}

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
class ChannelState {
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
export class Client extends Emitter {
  /** @type {Promise<Welcome>} Resolves on the first welcome; rejects if closed before. */
  ready;
  /** @type {string | null} The authenticated user. */
  user = null;
  /** @type {string | null} The current connection's id (from the welcome). */
  connectionId = null;

  #url;
  #tokenSource;
  #WebSocket;
  #options;
  /** @type {Record<string, string>} */
  #idempotencyFields;
  /** @type {State} */
  #state = "connecting";
  /** @type {WebSocketLike | null} */
  #socket = null;
  /** @type {string | null} */
  #token = null;
  #tokenStale = false;
  #everOpen = false;
  #attempt = 0;
  #authFailures = 0;
  #nextRef = 0;
  /** @type {Map<number, Call>} Sent on the current socket, by ref, oldest first. */
  #pending = new Map();
  /** @type {Call[]} Waiting for a connection. */
  #queue = [];
  /** @type {Map<string, ChannelState>} */
  #channels = new Map();
  /** Channels unsubscribed on this connection: events still in flight are dropped. */
  #ended = new Set();
  #lastFrameAt = 0;
  #pingSentAt = 0;
  #timers = {
    /** @type {ReturnType<typeof setTimeout> | undefined} */ reconnect: undefined,
    /** @type {ReturnType<typeof setTimeout> | undefined} */ connect: undefined,
    /** @type {ReturnType<typeof setTimeout> | undefined} */ keepAlive: undefined,
    /** @type {ReturnType<typeof setTimeout> | undefined} */ refresh: undefined,
    /** @type {ReturnType<typeof setTimeout> | undefined} */ stable: undefined,
  };
  #readyResolve = /** @type {(welcome: Welcome) => void} */ (() => {});
  #readyReject = /** @type {(error: Error) => void} */ (() => {});

  /** @param {string} url @param {Options} options */
  constructor(url, options) {
    super();
    const { token, WebSocket, idempotencyFields, ...rest } = options ?? {};
    if (token == null) throw new TypeError("connect(): options.token is required");
    const Socket = WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof Socket !== "function") {
      throw new TypeError("connect(): no WebSocket here; pass options.WebSocket (e.g. from 'ws')");
    }
    this.#url = url;
    this.#tokenSource = token;
    this.#WebSocket = /** @type {WebSocketConstructor} */ (Socket);
    this.#options = { ...DEFAULTS, ...rest };
    this.#idempotencyFields = { ...IDEMPOTENCY_FIELDS, ...idempotencyFields };
    this.ready = new Promise((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    this.ready.catch(() => {}); // awaiting `ready` is optional
    queueMicrotask(() => this.#open());
  }

  /** @returns {State} */
  get state() {
    return this.#state;
  }

  /** A getter, so that checks after an `await` are not narrowed away by the type checker. */
  get #closed() {
    return this.#state === "closed";
  }

  /**
   * Send `<service>.<action>` (or any message type) and resolve with the reply's `data`.
   * Waits for a connection when there is none (bounded by `maxQueue` and the timeout).
   * @param {string} type
   * @param {Record<string, any>} [data] The request's fields.
   * @param {RequestOptions} [options]
   * @returns {Promise<any>}
   */
  request(type, data = {}, options = {}) {
    const fields = this.#withIdempotencyKey(type, data);
    return new Promise((resolve, reject) => {
      this.#call(type, fields, options.timeout, (error, reply) => {
        if (error) {
          error.request = { type, data: fields };
          reject(error);
        } else {
          this.#afterReply(type, fields, reply);
          resolve(reply);
        }
      });
    });
  }

  /**
   * Follow one channel. Made at once when connected, else as soon as the client is.
   * Several subscriptions of one channel share the connection's subscription.
   * @param {string} channel
   * @param {(event: RealtimeEvent) => void} [onEvent]
   * @param {SubscribeOptions} [options]
   * @returns {Subscription}
   */
  subscribe(channel, onEvent, options = {}) {
    let state = this.#channels.get(channel);
    const fresh = !state;
    if (!state) {
      state = new ChannelState(channel, options.since ?? null);
      this.#channels.set(channel, state);
      this.#ended.delete(channel);
    }
    const subscription = new Subscription(state, (held) => this.#release(channel, held));
    if (onEvent) subscription.on("event", onEvent);
    if (this.#state === "closed") {
      this.#channels.delete(channel);
      subscription._end(new RealtimeError("closed", "the client is closed"));
      return subscription;
    }
    state.holders.add(subscription);
    if (state.reply && state.live) subscription._subscribed(state.reply);
    else if (fresh && this.#state === "open" && !this.#awaitsWatched(state)) this.#subscribeChannel(state);
    return subscription;
  }

  /** Close for good: pending requests reject with `closed`, nothing reconnects. */
  close() {
    if (this.#state === "closed") return;
    const socket = this.#socket;
    this.#detach();
    this.#socket = null;
    socket?.close(1000, "client closed");
    this.#finish(new RealtimeError("closed", "the client was closed"));
  }

  // Connecting.

  async #open() {
    if (this.#closed) return;
    let token;
    try {
      token = await this.#currentToken();
    } catch (cause) {
      if (this.#closed) return;
      this.emit("error", new RealtimeError("token", `could not get a token: ${cause}`, { cause }));
      this.#retry(this.#backoff(this.#options.backoffBase));
      return;
    }
    if (this.#closed) return;
    const socket = new this.#WebSocket(this.#url);
    this.#socket = socket;
    this.#timers.connect = setTimeout(
      () => this.#drop(socket, "no welcome within connectTimeout"),
      this.#options.connectTimeout,
    );
    socket.onopen = () => this.#authenticate(socket, /** @type {string} */ (token));
    socket.onmessage = (event) => this.#onFrame(socket, event.data);
    socket.onclose = (event) => this.#onClose(socket, event.code ?? 1006, event.reason ?? "");
    socket.onerror = () => {}; // a close event follows, with the code
  }

  /** The token to connect with: the cached one unless refused, expiring, or never fetched. */
  async #currentToken() {
    const source = this.#tokenSource;
    if (typeof source !== "function") return source;
    const exp = tokenExpiry(this.#token);
    const expiring = exp != null && exp * 1000 - Date.now() < MIN_TOKEN_LIFE;
    if (this.#token == null || this.#tokenStale || expiring) {
      this.#token = await source();
      this.#tokenStale = false;
    }
    return this.#token;
  }

  /** @param {WebSocketLike} socket @param {string} token */
  #authenticate(socket, token) {
    if (socket !== this.#socket) return;
    this.#lastFrameAt = Date.now();
    this.#send(this.#internal("auth", { token }, (error, welcome) => {
      if (error) this.#onAuthRefused(socket, error);
      else this.#onWelcome(welcome);
    }));
  }

  /** @param {WebSocketLike} socket @param {RealtimeError} error */
  #onAuthRefused(socket, error) {
    if (error.code === "connection_lost") return;
    this.emit("error", error);
    this.#tokenStale = true;
    this.#drop(socket, "token refused", UNAUTHENTICATED);
  }

  /** @param {Welcome} welcome */
  #onWelcome(welcome) {
    clearTimeout(this.#timers.connect);
    this.user = welcome.user;
    this.connectionId = welcome.connection;
    this.#authFailures = 0;
    this.#state = "open";
    this.#timers.stable = setTimeout(() => (this.#attempt = 0), this.#options.stableAfter);
    this.#scheduleRefresh();
    this.#armKeepAlive(this.#options.pingInterval);
    for (const channel of this.#channels.values()) {
      if (!this.#awaitsWatched(channel)) this.#subscribeChannel(channel);
    }
    for (const call of this.#queue.splice(0)) this.#send(call);
    const first = !this.#everOpen;
    this.#everOpen = true;
    this.emit("state", "open");
    if (first) this.#readyResolve({ ...welcome });
  }

  // Disconnecting.

  /**
   * Give up on a socket without waiting for its closing handshake (which a dead peer never
   * completes), and act as if it had closed with `code`.
   * @param {WebSocketLike} socket @param {string} reason @param {number} [code]
   */
  #drop(socket, reason, code = CLIENT_DROP) {
    if (socket !== this.#socket) return;
    this.#detach();
    if (typeof socket.terminate === "function") socket.terminate();
    else socket.close(CLIENT_DROP, reason);
    this.#onClose(socket, code, reason);
  }

  /** Stop listening to the current socket. */
  #detach() {
    const socket = this.#socket;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = () => {};
  }

  /** @param {WebSocketLike} socket @param {number} code @param {string} reason */
  #onClose(socket, code, reason) {
    if (socket !== this.#socket) return;
    this.#socket = null;
    this.#clearConnectionTimers();
    this.#failPending();
    for (const channel of this.#channels.values()) {
      channel.live = false;
      channel.granted = false;
      clearTimeout(channel.retryTimer);
    }
    this.#ended.clear();
    this.emit("disconnect", { code, reason });
    if (this.#state === "closed") return;
    this.#afterClose(code, reason);
  }

  /** Decide what a close means: the close-code table of docs/protocol.md. */
  #afterClose(/** @type {number} */ code, /** @type {string} */ reason) {
    const { backoffBase, slowDownFactor, maxAuthFailures } = this.#options;
    if (NO_RECONNECT.has(code)) {
      this.#finish(new RealtimeError("closed", `closed by the gateway (${code} ${reason})`, { closeCode: code, reason }));
    } else if (code === UNAUTHENTICATED) {
      this.#tokenStale = true;
      this.#authFailures += 1;
      if (typeof this.#tokenSource !== "function" || this.#authFailures >= maxAuthFailures) {
        this.#finish(new RealtimeError("unauthenticated", `authentication failed (${reason})`, { closeCode: code, reason }));
      } else {
        // The first 4401 of a session is its token expiring: reconnect at once with a new one.
        this.#retry(this.#authFailures === 1 ? 0 : this.#backoff(backoffBase));
      }
    } else if (code === SERVICE_RESTART) {
      // Jitter only: every client of a restarting gateway reconnects at the same moment.
      this.#retry(Math.random() * backoffBase);
    } else {
      this.#retry(this.#backoff(SLOW_DOWN.has(code) ? backoffBase * slowDownFactor : backoffBase));
    }
  }

  /** @param {number} delay */
  #retry(delay) {
    const state = this.#everOpen ? "reconnecting" : "connecting";
    if (this.#state !== state) {
      this.#state = state;
      this.emit("state", state);
    }
    this.#timers.reconnect = setTimeout(() => this.#open(), delay);
  }

  /** Full jitter: random(0, min(cap, base * 2^attempt)), then one attempt more. */
  #backoff(/** @type {number} */ base) {
    const ceiling = Math.min(this.#options.backoffCap, base * 2 ** this.#attempt);
    this.#attempt += 1;
    return Math.random() * ceiling;
  }

  #clearConnectionTimers() {
    const { reconnect, ...connection } = this.#timers;
    for (const timer of Object.values(connection)) clearTimeout(timer);
  }

  /** Requests sent on a lost connection: retried when idempotent, else rejected. */
  #failPending() {
    const retried = [];
    for (const call of this.#pending.values()) {
      call.ref = null;
      if (call.retry) retried.push(call);
      else this.#settle(call, new RealtimeError("connection_lost", `the connection dropped before the reply to ${call.type}`));
    }
    this.#pending.clear();
    this.#queue.unshift(...retried);
  }

  /** @param {RealtimeError} error */
  #finish(error) {
    this.#state = "closed";
    clearTimeout(this.#timers.reconnect);
    this.#clearConnectionTimers();
    for (const call of [...this.#pending.values(), ...this.#queue]) this.#settle(call, error);
    this.#pending.clear();
    this.#queue = [];
    for (const channel of this.#channels.values()) {
      clearTimeout(channel.retryTimer);
      for (const holder of channel.holders) holder._end(error);
    }
    this.#channels.clear();
    this.#readyReject(error);
    if (error.data.closeCode != null) this.emit("error", error);
    this.emit("state", "closed");
  }

  // Requests.

  /**
   * A request that reaches the current connection or waits for the next one.
   * @param {string} type @param {Record<string, any>} fields @param {number | undefined} timeout
   * @param {Call["settle"]} settle
   * @returns {Call}
   */
  #call(type, fields, timeout, settle) {
    const wait = timeout ?? this.#options.requestTimeout;
    const retry = this.#idempotencyFields[type] != null;
    /** @type {Call} */
    const call = { type, fields, settle, retry, deadline: Date.now() + wait, timer: undefined, resend: undefined, ref: null };
    if (this.#state === "closed") {
      settle(new RealtimeError("closed", "the client is closed"), null);
      return call;
    }
    call.timer = setTimeout(() => this.#expire(call), wait);
    if (this.#state === "open") this.#send(call);
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
  #internal(type, fields, settle) {
    const timeout = this.#options.requestTimeout;
    /** @type {Call} */
    const call = { type, fields, settle, retry: false, deadline: Date.now() + timeout, timer: undefined, resend: undefined, ref: null };
    call.timer = setTimeout(() => this.#expire(call), timeout);
    return call;
  }

  /** @param {Call} call */
  #send(call) {
    const socket = this.#socket;
    if (!socket) return;
    call.ref = ++this.#nextRef;
    this.#pending.set(call.ref, call);
    socket.send(JSON.stringify({ ...call.fields, type: call.type, ref: call.ref }));
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
   * The fields with an idempotency key when the type has one and the caller gave none; a
   * copy, so a retry of the same call reuses the key.
   * @param {string} type @param {Record<string, any>} data
   */
  #withIdempotencyKey(type, data) {
    const field = this.#idempotencyFields[type];
    if (field == null || data[field] != null) return { ...data };
    return { ...data, [field]: randomKey() };
  }

  /** Rooms a `chat.join` opened are rejoined after a reconnect; `chat.leave` forgets them. */
  #afterReply(/** @type {string} */ type, /** @type {Record<string, any>} */ fields, /** @type {any} */ data) {
    if (type === "chat.join" && typeof data?.channel === "string") this.#joined(data);
    if (type === "chat.leave" && typeof data?.channel === "string") {
      this.#unsubscribed(data.channel, new RealtimeError("left", `left the room ${fields.room}`));
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

  // Subscriptions.

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
    if (watch && !watch.live && this.#state === "open") this.#subscribeChannel(watch);
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
    this.#send(this.#internal(type, fields, (error, data) => {
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
      this.emit("recovered", { channel: channel.name, ok, data });
    }
    // A rejoin's missed messages come in its reply: deliver them as the events they were.
    for (const message of channel.room != null && resubscribe ? data.messages ?? [] : []) {
      const { position, ...fields } = message;
      this.#deliver({ channel: channel.name, event: "message", position, data: fields });
    }
    this.#subscribeWatch(channel);
  }

  /** @param {ChannelState} channel @param {RealtimeError} error */
  #onSubscribeRefused(channel, error) {
    if (error.code === "connection_lost") return; // resubscribed on the next connection
    if (channel.subscribedBefore && TRANSIENT.has(error.code)) {
      channel.live = false;
      channel.retryTimer = setTimeout(() => {
        if (this.#state === "open" && this.#channels.get(channel.name) === channel) this.#subscribeChannel(channel);
      }, this.#backoff(this.#options.backoffBase));
      return;
    }
    this.#channels.delete(channel.name);
    for (const holder of channel.holders) holder._end(error);
    this.emit("unsubscribed", { channel: channel.name, reason: error.message, error });
    this.#subscribeWatch(channel);
  }

  /** The last holder of a channel let go. */
  #release(/** @type {string} */ name, /** @type {Subscription} */ holder) {
    const channel = this.#channels.get(name);
    if (!channel || !channel.holders.delete(holder) || !channel.unheld) return;
    this.#channels.delete(name);
    clearTimeout(channel.retryTimer);
    if (channel.live && this.#state === "open") {
      this.#ended.add(name);
      this.#send(this.#internal("unsubscribe", { channel: name }, () => {}));
    }
    this.#subscribeWatch(channel);
  }

  /** The gateway ended a subscription (`unsubscribed`, `chat.leave`). */
  #unsubscribed(/** @type {string} */ name, /** @type {RealtimeError} */ error) {
    const channel = this.#channels.get(name);
    this.#ended.add(name);
    if (!channel) return;
    this.#channels.delete(name);
    clearTimeout(channel.retryTimer);
    for (const holder of channel.holders) holder._end(error);
    this.emit("unsubscribed", { channel: name, reason: error.message, error });
    this.#subscribeWatch(channel);
  }

  // Frames.

  /** @param {WebSocketLike} socket @param {unknown} text */
  #onFrame(socket, text) {
    if (socket !== this.#socket) return;
    this.#lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(String(text));
    } catch {
      return; // the gateway sends JSON only; nothing to do with anything else
    }
    switch (frame?.type) {
      case "event":
        return this.#deliver(frame);
      case "welcome":
      case "reply":
        return this.#onReply(frame);
      case "unsubscribed":
        return this.#unsubscribed(frame.channel, new RealtimeError("unsubscribed", frame.reason ?? "ended by the gateway"));
      case "recovery":
        return this.#onRecovery(frame);
      case "token_expiring":
        return this.#onExpiring(frame);
      default:
        return; // pong (any frame keeps the connection alive), and types added later
    }
  }

  /**
   * The gateway could not replay exactly what its own bus outage (or a join's catch-up)
   * missed: the same news as a resubscribe answered `recovered: false`.
   * @param {any} frame
   */
  #onRecovery(frame) {
    const channel = this.#channels.get(frame.channel);
    if (!channel) return;
    channel.position = null; // what follows starts afresh, in order, whatever its positions
    const data = { position: frame.position ?? null, recovered: false };
    for (const holder of channel.holders) holder._emit("recovered", false, data);
    this.emit("recovered", { channel: channel.name, ok: false, data });
  }

  /** @param {any} frame */
  #onReply(frame) {
    const call = frame.ref == null ? null : this.#pending.get(frame.ref);
    if (frame.ref == null && frame.ok === false) return this.#onUnmatchedError(frame.error);
    if (!call) return; // expired already, or not ours
    if (frame.type === "welcome") return this.#settle(call, null, frame);
    if (frame.ok) return this.#settle(call, null, frame.data ?? {});
    const error = RealtimeError.fromReply(frame.error);
    if (call.retry && error.code === "service_unavailable" && this.#retryLater(call)) return;
    this.#settle(call, error);
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
    else this.emit("error", realtimeError);
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
      if (queued >= 0 && this.#state === "open") {
        this.#queue.splice(queued, 1);
        this.#send(call);
      }
    }, delay);
    return true;
  }

  /** Hand one event to the client's and the channel's listeners, unless already delivered. */
  #deliver(/** @type {RealtimeEvent} */ frame) {
    const channel = this.#channels.get(frame.channel);
    if (channel ? !channel.accept(frame.position) : this.#ended.has(frame.channel)) return;
    const event = { channel: frame.channel, event: frame.event, position: frame.position ?? null, data: frame.data };
    this.emit("event", event);
    for (const holder of channel?.holders ?? []) holder._emit("event", event);
  }

  // Keep-alive and token refresh.

  /**
   * One timer, re-armed lazily, rather than one per frame: sends a `ping` after
   * `pingInterval` of silence and drops the connection after `pingTimeout` more.
   * @param {number} delay
   */
  #armKeepAlive(delay) {
    this.#timers.keepAlive = setTimeout(() => this.#checkAlive(), delay);
  }

  #checkAlive() {
    const socket = this.#socket;
    if (!socket || this.#state !== "open") return;
    const { pingInterval, pingTimeout } = this.#options;
    const now = Date.now();
    const idle = now - this.#lastFrameAt;
    if (idle >= pingInterval + pingTimeout) return this.#drop(socket, "keep-alive: no frame in time");
    if (idle >= pingInterval && this.#pingSentAt <= this.#lastFrameAt) {
      this.#pingSentAt = now;
      socket.send(JSON.stringify({ type: "ping" }));
    }
    this.#armKeepAlive(idle < pingInterval ? pingInterval - idle : pingInterval + pingTimeout - idle);
  }

  /** How long before `exp` to refresh: `refreshBefore`, at most half the remaining life. */
  #refreshLead(/** @type {number} */ exp) {
    const { refreshBefore } = this.#options;
    if (refreshBefore === false) return 0;
    return Math.min(refreshBefore, (exp * 1000 - Date.now()) / 2);
  }

  /**
   * The refresh is already set from the token's own `exp`: the notice is for the
   * application (to warn a user whose token function cannot renew, say).
   * @param {any} frame
   */
  #onExpiring(frame) {
    if (typeof frame.expires_at === "number") this.emit("expiring", { expiresAt: frame.expires_at });
  }

  #scheduleRefresh() {
    clearTimeout(this.#timers.refresh);
    const exp = tokenExpiry(this.#token);
    if (exp == null || typeof this.#tokenSource !== "function" || this.#options.refreshBefore === false) return;
    const delay = exp * 1000 - Date.now() - this.#refreshLead(exp);
    // Never sooner than a second: a failing refresh near `exp` must not spin.
    this.#timers.refresh = setTimeout(() => this.#refresh(), Math.max(1000, delay));
  }

  /** Re-authenticate the open connection with a fresh token (docs/protocol.md, "Expiry"). */
  async #refresh() {
    const socket = this.#socket;
    let token;
    try {
      token = await /** @type {() => string | Promise<string>} */ (this.#tokenSource)();
    } catch (cause) {
      this.emit("error", new RealtimeError("token", `could not refresh the token: ${cause}`, { cause }));
      return this.#scheduleRefresh();
    }
    if (socket !== this.#socket || this.#state !== "open") return;
    this.#send(this.#internal("auth", { token }, (error) => {
      if (error) {
        if (error.code !== "connection_lost") this.emit("error", error);
      } else {
        this.#token = token;
      }
      if (socket === this.#socket) this.#scheduleRefresh();
    }));
  }
}

/**
 * Connect to a gateway's `/ws`. Returns at once; see `client.ready` and the `state` event.
 * @param {string} url e.g. `ws://localhost:8000/ws`
 * @param {Options} options
 * @returns {Client}
 */
export function connect(url, options) {
  return new Client(url, options);
}

/**
 * Order of two positions: tuples of integers split on `-` (docs/protocol.md).
 * @param {string} a @param {string} b
 * @returns {number} negative, 0 or positive
 */
export function comparePositions(a, b) {
  const left = String(a).split("-");
  const right = String(b).split("-");
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = Number(left[i] ?? 0) - Number(right[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/**
 * A JWT's `exp` (seconds since the epoch), read without verifying it; null if unreadable.
 * @param {string | null} token
 * @returns {number | null}
 */
function tokenExpiry(token) {
  try {
    const payload = /** @type {string} */ (token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload)).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
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
