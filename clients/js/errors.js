// @ts-check
/**
 * The client's error, and the gateway's codes as the client acts on them: the close-code
 * table of docs/protocol.md and the error codes worth a retry.
 * @module
 */

export const NO_RECONNECT = new Set([1000, 1008, 1009, 4403]);
export const SLOW_DOWN = new Set([1013, 4408, 4429]);
export const SERVICE_RESTART = 1012;
export const UNAUTHENTICATED = 4401;
/** A code of the private range for connections the client gives up on itself. */
export const CLIENT_DROP = 4000;

/** Error codes after which a resubscribe is tried again on the same connection. */
export const TRANSIENT = new Set(["service_unavailable", "rate_limited", "internal_error"]);

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
