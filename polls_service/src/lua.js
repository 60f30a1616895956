// The service's Lua scripts (../lua/*.lua), each with prelude.lua put before it, run by
// EVALSHA and loaded again when Redis has lost them (NOSCRIPT, after a restart).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const LUA_DIR = new URL('../lua/', import.meta.url);

export class Script {
  /** @param {string} name @param {boolean} [withPrelude] */
  constructor(name, withPrelude = true) {
    const body = readFileSync(new URL(`${name}.lua`, LUA_DIR), 'utf8');
    this.name = name;
    this.source = withPrelude ? `${readFileSync(new URL('prelude.lua', LUA_DIR), 'utf8')}\n${body}` : body;
    this.sha = createHash('sha1').update(this.source).digest('hex');
  }

  /**
   * Run the script; binary replies stay Buffers.
   * @param {import('ioredis').Redis} redis
   * @param {string[]} keys
   * @param {(string | number | Buffer)[]} args
   * @returns {Promise<unknown>}
   */
  async run(redis, keys, args) {
    try {
      return await redis.callBuffer('EVALSHA', this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!String(/** @type {Error} */ (err).message).startsWith('NOSCRIPT')) throw err;
      await redis.script('LOAD', this.source);
      return redis.callBuffer('EVALSHA', this.sha, keys.length, ...keys, ...args);
    }
  }
}
