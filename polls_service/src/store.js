// The poll service's state in Redis, under its own prefix poll: (docs/polls.md): every
// mutation is one Lua script. Failures of Redis are thrown as RedisFailure, so that the
// worker leaves their entries unacknowledged.
import { randomBytes } from 'node:crypto';

import { unpack } from './codec.js';
import { Script } from './lua.js';

export class RedisFailure extends Error {
  /** @param {unknown} cause */
  constructor(cause) {
    super(`Redis failed: ${/** @type {Error} */ (cause).message}`, { cause });
  }
}

const CLOSING = 'poll:closing';
const DIRTY = 'poll:dirty';
/** Polls closed, or tallies published, per script call of the loops. */
const LOOP_BATCH = 100;

/** @returns {string} a new poll id: 16 random lowercase hex digits */
export function newPollId() {
  return randomBytes(8).toString('hex');
}

/**
 * A user-given string inside a key, length first, so that no two (user, key) pairs collide.
 * @param {...string} parts
 */
function scoped(...parts) {
  return parts.map((part) => `${Buffer.byteLength(part)}:${part}`).join(':');
}

export class PollStore {
  /**
   * @param {import('ioredis').Redis} redis
   * @param {import('./settings.js').Settings} settings
   */
  constructor(redis, settings) {
    this.redis = redis;
    this.settings = settings;
    this.tallyIntervalMs = Math.max(1, Math.round(1000 / settings.tallyPerSecond));
    this.scripts = Object.fromEntries(['create', 'vote', 'flush', 'close', 'read'].map((name) => [name, new Script(name)]));
  }

  /** @param {string} name @param {string[]} keys @param {(string | number | Buffer)[]} args */
  async #run(name, keys, args) {
    try {
      return await this.scripts[name].run(this.redis, keys, args);
    } catch (err) {
      throw new RedisFailure(err);
    }
  }

  /**
   * @param {{question: string, options: string[], closesInMs: number, key: string | null}} poll
   * @param {string} user
   * @param {string} requestId
   * @returns {Promise<Record<string, unknown>>} the reply data (the first one's, for a repeat)
   */
  async create(poll, user, requestId) {
    const id = newPollId();
    const byRequest = `poll:req:${requestId}`;
    const byKey = poll.key === null ? byRequest : `poll:created:${scoped(user, poll.key)}`;
    const packed = await this.#run('create',
      [`poll:poll:${id}`, `poll:counts:${id}`, CLOSING, byRequest, byKey],
      [id, poll.question, JSON.stringify(poll.options), poll.closesInMs, this.settings.retentionMs,
        this.settings.keyTtlMs, user]);
    return /** @type {Record<string, unknown>} */ (unpack(/** @type {Buffer} */ (packed)));
  }

  /**
   * @param {{poll: string, option: string, key: string}} vote
   * @param {string} user
   * @returns {Promise<{ok: true, data: Record<string, unknown>} | {ok: false, code: string}>}
   */
  async vote(vote, user) {
    const id = vote.poll;
    const [status, payload] = /** @type {[Buffer, Buffer]} */ (await this.#run('vote',
      [`poll:poll:${id}`, `poll:counts:${id}`, `poll:votes:${id}`, `poll:key:${id}:${scoped(user, vote.key)}`, DIRTY],
      [id, user, vote.option, this.settings.keyTtlMs, this.tallyIntervalMs, this.settings.historyMaxlen]));
    if (status.toString() === 'ok') return { ok: true, data: /** @type {Record<string, unknown>} */ (unpack(payload)) };
    return { ok: false, code: payload.toString() };
  }

  /**
   * The poll's state and position, and with since the events after it.
   * @param {string} id
   * @param {string | null} since
   * @returns {Promise<PollState | null>}
   */
  async read(id, since) {
    const packed = await this.#run('read',
      [`poll:poll:${id}`, `poll:counts:${id}`, `poll:history:${id}`],
      [id, since ?? '', this.settings.historyMaxlen]);
    return packed === null ? null : /** @type {PollState} */ (unpack(/** @type {Buffer} */ (packed)));
  }

  /** @returns {Promise<string[]>} the polls this call closed (each by exactly one caller) */
  async closeDue() {
    const closed = await this.#run('close', [CLOSING, DIRTY], [LOOP_BATCH, this.settings.historyMaxlen]);
    return /** @type {Buffer[]} */ (closed).map((id) => id.toString());
  }

  /** @returns {Promise<number>} the coalesced tallies this call published */
  async flushTallies() {
    return Number(await this.#run('flush', [DIRTY], [LOOP_BATCH, this.settings.historyMaxlen]));
  }
}

/**
 * @typedef {object} PollState
 * @property {string} question
 * @property {string[]} options
 * @property {Record<string, number>} counts
 * @property {number} closes_at
 * @property {boolean} closed
 * @property {string} position
 * @property {boolean} recovered
 * @property {{event: string, position: string, data: Record<string, unknown>}[]} events
 */
