// @ts-check
/** Keep-alive: a `ping` after a silence, and a connection declared dead after a longer one. @module */

/** @import { WebSocketLike } from "./types.js" */

/**
 * What the keep-alive needs of its client.
 * @internal
 * @typedef {object} KeepAliveLink
 * @property {() => WebSocketLike | null} socket The open connection, if there is one.
 * @property {(socket: WebSocketLike) => void} dead Drop a connection that went silent.
 */

export class KeepAlive {
  #options;
  #link;
  #lastFrameAt = 0;
  #pingSentAt = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer = undefined;

  /** @param {{pingInterval: number, pingTimeout: number}} options @param {KeepAliveLink} link */
  constructor(options, link) {
    this.#options = options;
    this.#link = link;
  }

  /** A frame came (or a connection opened): the silence starts again. */
  heard() {
    this.#lastFrameAt = Date.now();
  }

  /** The connection is open: watch it. */
  start() {
    this.#arm(this.#options.pingInterval);
  }

  stop() {
    clearTimeout(this.#timer);
  }

  /**
   * One timer, re-armed lazily, rather than one per frame: sends a `ping` after
   * `pingInterval` of silence and drops the connection after `pingTimeout` more.
   * @param {number} delay
   */
  #arm(delay) {
    this.#timer = setTimeout(() => this.#check(), delay);
  }

  #check() {
    const socket = this.#link.socket();
    if (!socket) return;
    const { pingInterval, pingTimeout } = this.#options;
    const now = Date.now();
    const idle = now - this.#lastFrameAt;
    if (idle >= pingInterval + pingTimeout) return this.#link.dead(socket);
    if (idle >= pingInterval && this.#pingSentAt <= this.#lastFrameAt) {
      this.#pingSentAt = now;
      socket.send(JSON.stringify({ type: "ping" }));
    }
    this.#arm(idle < pingInterval ? pingInterval - idle : pingInterval + pingTimeout - idle);
  }
}
