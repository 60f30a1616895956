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
    /**
     * @param {{requestTimeout: number, maxQueue: number, backoffBase: number}} options
     * @param {Record<string, string> | undefined} idempotencyFields Merged over the defaults.
     * @param {RequestsLink} link
     */
    constructor(options: {
        requestTimeout: number;
        maxQueue: number;
        backoffBase: number;
    }, idempotencyFields: Record<string, string> | undefined, link: RequestsLink);
    /**
     * The fields with an idempotency key when the type has one and the caller gave none; a
     * copy, so a retry of the same call reuses the key.
     * @param {string} type @param {Record<string, any>} data
     */
    withIdempotencyKey(type: string, data: Record<string, any>): {
        [x: string]: any;
    };
    /**
     * A request that reaches the current connection or waits for the next one.
     * @param {string} type @param {Record<string, any>} fields @param {number | undefined} timeout
     * @param {Call["settle"]} settle
     * @returns {Call}
     */
    call(type: string, fields: Record<string, any>, timeout: number | undefined, settle: Call["settle"]): Call;
    /**
     * A message of the client's own on the current connection only: never queued, never
     * retried (it is redone on the next connection by whoever needs it).
     * @param {string} type @param {Record<string, any>} fields @param {Call["settle"]} settle
     * @returns {Call}
     */
    internal(type: string, fields: Record<string, any>, settle: Call["settle"]): Call;
    /** @param {Call} call */
    send(call: Call): void;
    /** A connection is open: send what waited for it, oldest first. */
    flush(): void;
    /** @param {any} frame A `welcome` or a `reply`. */
    onReply(frame: any): void;
    /** Requests sent on a lost connection: retried when idempotent, else rejected. */
    connectionLost(): void;
    /** The client closed: every request, sent or waiting, fails with `error`. */
    fail(error: RealtimeError): void;
    #private;
}
/**
 * One request awaiting its reply.
 */
export type Call = {
    type: string;
    /**
     * Everything but `type` and `ref`.
     */
    fields: Record<string, any>;
    /**
     * Called once, synchronously
     * when the reply is read, so that state changes before the next frame is handled.
     */
    settle: (error: RealtimeError | null, data: any) => void;
    /**
     * Has an idempotency key: resent after a reconnect.
     */
    retry: boolean;
    deadline: number;
    /**
     * Its deadline.
     */
    timer: ReturnType<typeof setTimeout> | undefined;
    /**
     * A resend after `service_unavailable`.
     */
    resend: ReturnType<typeof setTimeout> | undefined;
    ref: number | null;
};
/**
 * What the requests need of their client.
 */
export type RequestsLink = {
    /**
     * The current connection, if any.
     */
    socket: () => WebSocketLike | null;
    state: () => State;
    /**
     * An error reply no request is waiting for.
     */
    error: (error: RealtimeError) => void;
};
import { RealtimeError } from "./errors.js";
import type { WebSocketLike } from "./types.js";
import type { State } from "./types.js";
