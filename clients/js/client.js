// @ts-check
/**
 * The Client: one connection to a gateway at a time, replaced until `close()`: connecting
 * and authenticating, the close-code table's reconnect policy, token refresh. Its requests,
 * channels and keep-alive are kept by the Requests, Channels and KeepAlive it composes.
 * @module
 */

import { Backoff } from "./backoff.js";
import { Channels } from "./channels.js";
import { Emitter } from "./emitter.js";
import { CLIENT_DROP, NO_RECONNECT, RealtimeError, SERVICE_RESTART, SLOW_DOWN, UNAUTHENTICATED } from "./errors.js";
import { KeepAlive } from "./keepalive.js";
import { Requests } from "./requests.js";
import { Tokens } from "./tokens.js";

/** @import { Subscription } from "./subscription.js" */
/**
 * @import {
 *   ClientEvents, Options, RealtimeEvent, RequestOptions, State, SubscribeOptions, WebSocketConstructor,
 *   WebSocketLike, Welcome,
 * } from "./types.js"
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
  #WebSocket;
  #options;
  #tokens;
  #backoff;
  #requests;
  #channels;
  #keepAlive;
  /** @type {State} */
  #state = "connecting";
  /** @type {WebSocketLike | null} */
  #socket = null;
  #everOpen = false;
  #authFailures = 0;
  #timers = {
    /** @type {ReturnType<typeof setTimeout> | undefined} */ reconnect: undefined,
    /** @type {ReturnType<typeof setTimeout> | undefined} */ connect: undefined,
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
    this.#WebSocket = /** @type {WebSocketConstructor} */ (Socket);
    this.#options = { ...DEFAULTS, ...rest };
    this.#tokens = new Tokens(token);
    this.#backoff = new Backoff(this.#options.backoffCap);
    this.#requests = new Requests(this.#options, idempotencyFields, {
      socket: () => this.#socket,
      state: () => this.#state,
      error: (error) => this.emit("error", error),
    });
    this.#channels = new Channels(this.#requests, {
      state: () => this.#state,
      emit: (name, ...args) => this.emit(name, ...args),
      retryDelay: () => this.#backoff.next(this.#options.backoffBase),
    });
    this.#keepAlive = new KeepAlive(this.#options, {
      socket: () => (this.#state === "open" ? this.#socket : null),
      dead: (socket) => this.#drop(socket, "keep-alive: no frame in time"),
    });
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
    const fields = this.#requests.withIdempotencyKey(type, data);
    return new Promise((resolve, reject) => {
      this.#requests.call(type, fields, options.timeout, (error, reply) => {
        if (error) {
          error.request = { type, data: fields };
          reject(error);
        } else {
          this.#channels.afterReply(type, fields, reply);
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
    return this.#channels.subscribe(channel, onEvent, options);
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
      token = await this.#tokens.current();
    } catch (cause) {
      if (this.#closed) return;
      this.emit("error", new RealtimeError("token", `could not get a token: ${cause}`, { cause }));
      this.#retry(this.#backoff.next(this.#options.backoffBase));
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

  /** @param {WebSocketLike} socket @param {string} token */
  #authenticate(socket, token) {
    if (socket !== this.#socket) return;
    this.#keepAlive.heard();
    this.#requests.send(this.#requests.internal("auth", { token }, (error, welcome) => {
      if (error) this.#onAuthRefused(socket, error);
      else this.#onWelcome(welcome);
    }));
  }

  /** @param {WebSocketLike} socket @param {RealtimeError} error */
  #onAuthRefused(socket, error) {
    if (error.code === "connection_lost") return;
    this.emit("error", error);
    this.#tokens.refused();
    this.#drop(socket, "token refused", UNAUTHENTICATED);
  }

  /** @param {Welcome} welcome */
  #onWelcome(welcome) {
    clearTimeout(this.#timers.connect);
    this.user = welcome.user;
    this.connectionId = welcome.connection;
    this.#authFailures = 0;
    this.#state = "open";
    this.#timers.stable = setTimeout(() => this.#backoff.reset(), this.#options.stableAfter);
    this.#scheduleRefresh();
    this.#keepAlive.start();
    this.#channels.resubscribe();
    this.#requests.flush();
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
    this.#requests.connectionLost();
    this.#channels.disconnected();
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
      this.#tokens.refused();
      this.#authFailures += 1;
      if (!this.#tokens.renewable || this.#authFailures >= maxAuthFailures) {
        this.#finish(new RealtimeError("unauthenticated", `authentication failed (${reason})`, { closeCode: code, reason }));
      } else {
        // The first 4401 of a session is its token expiring: reconnect at once with a new one.
        this.#retry(this.#authFailures === 1 ? 0 : this.#backoff.next(backoffBase));
      }
    } else if (code === SERVICE_RESTART) {
      // Jitter only: every client of a restarting gateway reconnects at the same moment.
      this.#retry(Math.random() * backoffBase);
    } else {
      this.#retry(this.#backoff.next(SLOW_DOWN.has(code) ? backoffBase * slowDownFactor : backoffBase));
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

  #clearConnectionTimers() {
    const { reconnect, ...connection } = this.#timers;
    for (const timer of Object.values(connection)) clearTimeout(timer);
    this.#keepAlive.stop();
  }

  /** @param {RealtimeError} error */
  #finish(error) {
    this.#state = "closed";
    clearTimeout(this.#timers.reconnect);
    this.#clearConnectionTimers();
    this.#requests.fail(error);
    this.#channels.fail(error);
    this.#readyReject(error);
    if (error.data.closeCode != null) this.emit("error", error);
    this.emit("state", "closed");
  }

  // Frames.

  /** @param {WebSocketLike} socket @param {unknown} text */
  #onFrame(socket, text) {
    if (socket !== this.#socket) return;
    this.#keepAlive.heard();
    let frame;
    try {
      frame = JSON.parse(String(text));
    } catch {
      return; // the gateway sends JSON only; nothing to do with anything else
    }
    switch (frame?.type) {
      case "event":
        return this.#channels.deliver(frame);
      case "welcome":
      case "reply":
        return this.#requests.onReply(frame);
      case "unsubscribed":
        return this.#channels.unsubscribed(frame.channel, new RealtimeError("unsubscribed", frame.reason ?? "ended by the gateway"));
      case "recovery":
        return this.#channels.onRecovery(frame);
      case "token_expiring":
        return this.#onExpiring(frame);
      default:
        return; // pong (any frame keeps the connection alive), and types added later
    }
  }

  // Token refresh.

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
    const delay = this.#tokens.refreshDelay(this.#options.refreshBefore);
    if (delay != null) this.#timers.refresh = setTimeout(() => this.#refresh(), delay);
  }

  /** Re-authenticate the open connection with a fresh token (docs/protocol.md, "Expiry"). */
  async #refresh() {
    const socket = this.#socket;
    let token;
    try {
      token = await this.#tokens.fetch();
    } catch (cause) {
      this.emit("error", new RealtimeError("token", `could not refresh the token: ${cause}`, { cause }));
      return this.#scheduleRefresh();
    }
    if (socket !== this.#socket || this.#state !== "open") return;
    this.#requests.send(this.#requests.internal("auth", { token }, (error) => {
      if (error) {
        if (error.code !== "connection_lost") this.emit("error", error);
      } else {
        this.#tokens.accepted(token);
      }
      if (socket === this.#socket) this.#scheduleRefresh();
    }));
  }
}
