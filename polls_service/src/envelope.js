// Bus values (docs/bus.md): decoding requests and reply addresses, building replies and
// announcements. Pure: no I/O.
import { randomBytes } from 'node:crypto';

import { unpack } from './codec.js';

export const VERSION = 1;

/** @returns {string} 32 random lowercase hex digits, like every Python-made id. */
export function newId() {
  return randomBytes(16).toString('hex');
}

/** @param {unknown} value @returns {value is Record<string, unknown>} */
export function isMap(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    && !(value instanceof Uint8Array) && Object.getPrototypeOf(value) === Object.prototype;
}

/**
 * @typedef {object} Request
 * @property {string} id
 * @property {number} ts
 * @property {string} type
 * @property {string} trace
 * @property {string} gw
 * @property {string} conn
 * @property {string | null} user
 * @property {Record<string, unknown>} data
 * @property {boolean} noreply
 */

/** @typedef {{gw: string, conn: string, re: string}} ReplyAddress */

const REQUIRED_STRINGS = /** @type {const} */ (['id', 'type', 'trace', 'gw', 'conn']);

/**
 * Decode an entry's `e`: a request, or the reason it is not one.
 * @param {Uint8Array | null | undefined} bytes
 * @returns {{request: Request} | {error: string}}
 */
export function decodeRequest(bytes) {
  if (!bytes) return { error: "the entry has no field 'e'" };
  let value;
  try {
    value = unpack(bytes);
  } catch (err) {
    return { error: `not msgpack: ${/** @type {Error} */ (err).message}` };
  }
  if (!isMap(value)) return { error: 'not a map' };
  if (value.v !== VERSION) return { error: `unsupported version ${String(value.v)}` };
  if (value.kind !== 'request') return { error: `kind ${String(value.kind)} on a request stream` };
  for (const field of REQUIRED_STRINGS) {
    if (typeof value[field] !== 'string') return { error: `'${field}' must be a string` };
  }
  if (!Number.isInteger(value.ts)) return { error: "'ts' must be an integer" };
  const user = value.user ?? null;
  if (user !== null && typeof user !== 'string') return { error: "'user' must be a string or nil" };
  if (!isMap(value.data)) return { error: "'data' must be a map" };
  return {
    request: {
      id: /** @type {string} */ (value.id),
      ts: /** @type {number} */ (value.ts),
      type: /** @type {string} */ (value.type),
      trace: /** @type {string} */ (value.trace),
      gw: /** @type {string} */ (value.gw),
      conn: /** @type {string} */ (value.conn),
      user,
      data: value.data,
      // Any value but true is an ordinary request (docs/bus.md).
      noreply: value.noreply === true,
    },
  };
}

/**
 * Decode an entry's `r`, read only when its `e` does not decode.
 * @param {Uint8Array | null | undefined} bytes
 * @returns {ReplyAddress | null}
 */
export function decodeReplyAddress(bytes) {
  if (!bytes) return null;
  let value;
  try {
    value = unpack(bytes);
  } catch {
    return null;
  }
  if (!isMap(value)) return null;
  const { gw, conn, re } = value;
  if (typeof gw !== 'string' || typeof conn !== 'string' || typeof re !== 'string') return null;
  return { gw, conn, re };
}

/**
 * @typedef {{code: string, message: string} & Record<string, unknown>} ErrorBody
 * @typedef {{ok: true, data: Record<string, unknown>} | {ok: false, error: ErrorBody}} Outcome
 */

/**
 * The reply map answering `address` with `outcome`.
 * @param {ReplyAddress} address
 * @param {Outcome} outcome
 * @param {number} [now]
 */
export function reply(address, outcome, now = Date.now()) {
  const base = { v: VERSION, kind: 'reply', id: newId(), ts: now, re: address.re, conn: address.conn };
  return outcome.ok
    ? { ...base, ok: true, data: outcome.data }
    : { ...base, ok: false, error: outcome.error };
}

/** @param {string} gateway @returns {string} the pub/sub channel of a gateway's replies. */
export function replyChannel(gateway) {
  return `gw:${gateway}:replies`;
}
