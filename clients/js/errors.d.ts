/**
 * The client's error, and the gateway's codes as the client acts on them: the close-code
 * table of docs/protocol.md and the error codes worth a retry.
 * @module
 */
export const NO_RECONNECT: Set<number>;
export const SLOW_DOWN: Set<number>;
export const SERVICE_RESTART: 1012;
export const UNAUTHENTICATED: 4401;
/** A code of the private range for connections the client gives up on itself. */
export const CLIENT_DROP: 4000;
/** Error codes after which a resubscribe is tried again on the same connection. */
export const TRANSIENT: Set<string>;
/**
 * Every refusal: a server error reply, or one of the client's own codes (`timeout`,
 * `connection_lost`, `queue_full`, `closed`, `unauthenticated`).
 */
export class RealtimeError extends Error {
    /** @param {{code?: string, message?: string}} error An `error` object of a reply. */
    static fromReply(error: {
        code?: string;
        message?: string;
    }): RealtimeError;
    /**
     * @param {string} code
     * @param {string} message
     * @param {Record<string, any>} [data] The error's other fields (e.g. `minimum`).
     */
    constructor(code: string, message: string, data?: Record<string, any>);
    /** @type {string} */
    code: string;
    /** @type {Record<string, any>} */
    data: Record<string, any>;
    /** @type {{type: string, data: Record<string, any>} | undefined} The request, key included. */
    request: {
        type: string;
        data: Record<string, any>;
    } | undefined;
}
