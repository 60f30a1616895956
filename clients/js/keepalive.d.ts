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
    /** @param {{pingInterval: number, pingTimeout: number}} options @param {KeepAliveLink} link */
    constructor(options: {
        pingInterval: number;
        pingTimeout: number;
    }, link: KeepAliveLink);
    /** A frame came (or a connection opened): the silence starts again. */
    heard(): void;
    /** The connection is open: watch it. */
    start(): void;
    stop(): void;
    #private;
}
/**
 * What the keep-alive needs of its client.
 */
export type KeepAliveLink = {
    /**
     * The open connection, if there is one.
     */
    socket: () => WebSocketLike | null;
    /**
     * Drop a connection that went silent.
     */
    dead: (socket: WebSocketLike) => void;
};
import type { WebSocketLike } from "./types.js";
