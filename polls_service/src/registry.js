// The service's announcement in the namespace registry (docs/bus.md "The namespace
// registry"): at start, and every RT_REGISTRY_TTL/3 while it runs.
import { pack } from './codec.js';
import { VERSION, newId } from './envelope.js';
import { Script } from './lua.js';
import { REQUEST_FIELDS } from './rules.js';

export const REGISTRY_KEYS = ['{registry}:owners', '{registry}:services', '{registry}:alive'];

/** The namespace this service owns, and why each policy. */
export const NAMESPACES = [
  {
    name: 'poll',
    // Anyone signed in may watch a poll whose id they were given; nothing is private.
    access: 'authenticated',
    // Tallies and the close are kept in a history, so a reconnecting client catches up.
    history: true,
    // Who watches a poll is nobody's business, and tracking it costs a notification each.
    presence: false,
  },
];

/** A refused claim: another service owns one of the namespaces. */
export class RegistryRefused extends Error {}

/**
 * @param {string} service
 * @param {string} instance
 * @param {number} [now]
 */
export function announcement(service, instance, now = Date.now()) {
  return {
    v: VERSION,
    kind: 'announcement',
    id: newId(),
    ts: now,
    service,
    instance,
    requests: REQUEST_FIELDS,
    namespaces: NAMESPACES,
  };
}

export class Announcer {
  /**
   * @param {import('ioredis').Redis} redis
   * @param {{service: string, instance: string, ttlMs: number, log: import('./log.js').Logger}} options
   */
  constructor(redis, { service, instance, ttlMs, log }) {
    this.redis = redis;
    this.service = service;
    this.instance = instance;
    this.ttlMs = ttlMs;
    this.log = log;
    this.script = new Script('announce', false);
    /** @type {NodeJS.Timeout | null} */
    this.timer = null;
  }

  /**
   * @returns {Promise<number>} the lease's new expiry (ms)
   * @throws {RegistryRefused} another service owns a namespace; other errors are Redis's.
   */
  async announce() {
    const bytes = pack(announcement(this.service, this.instance));
    try {
      return Number(await this.script.run(this.redis, REGISTRY_KEYS,
        [this.service, bytes, Math.round(this.ttlMs), ...NAMESPACES.map((ns) => ns.name)]));
    } catch (err) {
      const message = String(/** @type {Error} */ (err).message);
      if (message.startsWith('OWNED')) throw new RegistryRefused(message.slice('OWNED '.length));
      throw err;
    }
  }

  /** Refresh every third of the lease; a failed refresh is logged and the service goes on. */
  start() {
    this.timer = setInterval(() => {
      this.announce().catch((err) => {
        this.log.error('registry refresh failed', { error: /** @type {Error} */ (err).message });
      });
    }, this.ttlMs / 3);
    this.timer.unref();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
  }
}
