// The bus worker (docs/bus.md "Requests: the stream and the consumer group"): reads the
// request stream in the service's consumer group, answers each entry, acknowledges and
// deletes it after the reply is published, and claims entries other instances left pending.
import { pack } from './codec.js';
import { decodeReplyAddress, decodeRequest, reply, replyChannel } from './envelope.js';
import { RedisFailure } from './store.js';

const MAX_BLOCK_MS = 2000;
const MAX_BACKOFF_MS = 5000;

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms).unref(); });

/** Exponential backoff with jitter for a loop that meets Redis failures. */
export class Backoff {
  constructor(initialMs = 100, maxMs = MAX_BACKOFF_MS) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.failures = 0;
  }

  /** @returns {number} ms to wait before the next try */
  next() {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** this.failures);
    this.failures += 1;
    return base / 2 + Math.random() * (base / 2);
  }

  reset() {
    this.failures = 0;
  }
}

/**
 * Field values of a stream entry by name.
 * @param {Buffer[] | null} flat
 * @returns {Map<string, Buffer>}
 */
function entryFields(flat) {
  const fields = new Map();
  for (let i = 0; flat && i + 1 < flat.length; i += 2) fields.set(flat[i].toString(), flat[i + 1]);
  return fields;
}

export class Worker {
  /**
   * @param {{reader: import('ioredis').Redis, redis: import('ioredis').Redis,
   *   handlers: import('./handlers.js').Handlers, settings: import('./settings.js').Settings,
   *   metrics: import('./metrics.js').Metrics, log: import('./log.js').Logger, service: string}} parts
   */
  constructor({ reader, redis, handlers, settings, metrics, log, service }) {
    this.reader = reader;
    this.redis = redis;
    this.handlers = handlers;
    this.settings = settings;
    this.metrics = metrics;
    this.log = log;
    this.service = service;
    this.stream = `svc:${service}:requests`;
    this.group = service;
    this.consumer = `${service}-${settings.instanceId}`;
    this.blockMs = Math.max(1, Math.min(MAX_BLOCK_MS, Math.round(settings.claimIntervalMs)));
    this.stopped = false;
    /** Whether the last read or claim succeeded: part of readiness. */
    this.healthy = false;
    this.backoff = new Backoff();
  }

  async ensureGroup() {
    try {
      await this.redis.xgroup('CREATE', this.stream, this.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String(/** @type {Error} */ (err).message).startsWith('BUSYGROUP')) throw err;
    }
  }

  stop() {
    this.stopped = true;
  }

  async run() {
    let nextClaim = 0;
    let joined = false;
    while (!this.stopped) {
      try {
        if (!joined) {
          await this.ensureGroup();
          joined = true;
          this.healthy = true;
        }
        if (Date.now() >= nextClaim) {
          await this.claimPass();
          await this.sampleBacklog();
          nextClaim = Date.now() + this.settings.claimIntervalMs;
        }
        const read = /** @type {[Buffer, [Buffer, Buffer[] | null][]][] | null} */ (await this.reader.xreadgroupBuffer(
          'GROUP', this.group, this.consumer, 'COUNT', this.settings.batch, 'BLOCK', this.blockMs,
          'STREAMS', this.stream, '>'));
        this.healthy = true;
        this.backoff.reset();
        if (read !== null && !this.stopped) await this.handleEntries(read[0][1]);
      } catch (err) {
        if (this.stopped) break;
        const message = String(/** @type {Error} */ (err).message);
        this.metrics.busErrors.inc({ process: this.service });
        if (message.includes('NOGROUP')) {
          // Redis lost the group (a restart without persistence): create it again.
          this.log.warning('consumer group missing; creating it again', { stream: this.stream });
          joined = false;
          continue;
        }
        this.healthy = false;
        const wait = this.backoff.next();
        this.log.error('request stream unavailable; retrying', { error: message, retry_in_ms: Math.round(wait) });
        await sleep(wait);
      }
    }
  }

  /** Take over entries left pending too long by another consumer (one that died). */
  async claimPass() {
    let cursor = '0-0';
    do {
      const [next, entries] = /** @type {[Buffer, [Buffer, Buffer[] | null][]]} */ (await this.redis.callBuffer('XAUTOCLAIM',
        this.stream, this.group, this.consumer, this.settings.claimIdleMs, cursor, 'COUNT', this.settings.batch));
      cursor = next.toString();
      if (entries.length > 0) {
        this.log.info('claimed entries left pending', { count: entries.length });
        await this.handleEntries(entries);
      }
    } while (cursor !== '0-0' && !this.stopped);
  }

  async sampleBacklog() {
    const length = Number(await this.redis.xlen(this.stream));
    const groups = /** @type {unknown[][]} */ (await this.redis.xinfo('GROUPS', this.stream));
    const mine = groups.map(flatToObject).find((group) => group.name === this.group);
    const consumers = /** @type {unknown[][]} */ (await this.redis.xinfo('CONSUMERS', this.stream, this.group));
    const live = consumers.map(flatToObject).filter((consumer) => Number(consumer.idle) <= this.settings.claimIdleMs);
    this.metrics.backlog({
      length,
      pending: Number(mine?.pending ?? 0),
      lag: mine?.lag === null || mine?.lag === undefined ? -1 : Number(mine.lag),
      consumers: live.length,
    });
  }

  /**
   * Answer the entries, then publish the replies, XACK and XDEL in one pipeline. They are
   * handled side by side: each handler's first Redis command is sent before the next
   * handler starts, so Redis still runs one connection's requests in stream order. An entry
   * whose handling met a Redis failure is left pending (claimed again later); the others are
   * acknowledged.
   * @param {[Buffer, Buffer[] | null][]} entries
   */
  async handleEntries(entries) {
    const outcomes = await Promise.allSettled(entries.map(([, flat]) => this.handleEntry(flat)));
    /** @type {string[]} */
    const done = [];
    /** @type {[string, Buffer][]} */
    const replies = [];
    /** @type {unknown} */
    let failure = null;
    outcomes.forEach((outcome, index) => {
      if (outcome.status === 'rejected') {
        failure = outcome.reason;
        return;
      }
      if (outcome.value !== null) replies.push(outcome.value);
      done.push(entries[index][0].toString());
    });
    if (done.length > 0) {
      const pipeline = this.redis.pipeline();
      for (const [channel, bytes] of replies) pipeline.publish(channel, bytes);
      pipeline.xack(this.stream, this.group, ...done);
      pipeline.xdel(this.stream, ...done);
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err !== null);
      if (failed) throw failed[0];
    }
    if (failure !== null) throw failure;
  }

  /**
   * @param {Buffer[] | null} flat
   * @returns {Promise<[string, Buffer] | null>} the reply to publish, if any
   */
  async handleEntry(flat) {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    // An entry claimed after it was trimmed has no fields left: acknowledge and drop it.
    if (flat === null || flat.length === 0) return null;
    const fields = entryFields(flat);
    const decoded = decodeRequest(fields.get('e'));
    if ('error' in decoded) {
      const address = decodeReplyAddress(fields.get('r'));
      this.log.warning('undecodable request entry', { reason: decoded.error, answered: address !== null });
      this.metrics.handled('undecodable', address === null ? 'dropped' : 'bad_request', seconds());
      if (address === null) return null;
      return this.#reply(address, { ok: false, error: { code: 'bad_request', message: 'the service could not decode the request' } });
    }
    const { request } = decoded;
    if (request.noreply && !this.handlers.knows(request.type)) {
      // A notification of a type this service does not know: acknowledged and ignored.
      this.metrics.handled(request.type, 'dropped', seconds());
      return null;
    }
    /** @type {import('./envelope.js').Outcome} */
    let outcome;
    try {
      outcome = await this.handlers.handle(request);
    } catch (err) {
      if (err instanceof RedisFailure) throw err;
      this.log.error('request failed', { trace: request.trace, type: request.type, error: /** @type {Error} */ (err).stack });
      outcome = { ok: false, error: { code: 'internal_error', message: 'the service failed to handle the request' } };
    }
    const result = outcome.ok ? 'ok' : outcome.error.code;
    this.metrics.handled(request.type, result, seconds());
    if (this.log.enabled('debug')) {
      this.log.debug('request handled', { trace: request.trace, type: request.type, result, ms: seconds() * 1000 });
    }
    if (request.noreply) return null;
    return this.#reply({ gw: request.gw, conn: request.conn, re: request.id }, outcome);
  }

  /**
   * @param {import('./envelope.js').ReplyAddress} address
   * @param {import('./envelope.js').Outcome} outcome
   * @returns {[string, Buffer] | null}
   */
  #reply(address, outcome) {
    try {
      return [replyChannel(address.gw), pack(reply(address, outcome))];
    } catch (err) {
      this.log.error('reply could not be encoded', { error: /** @type {Error} */ (err).message });
      return [replyChannel(address.gw), pack(reply(address, { ok: false, error: { code: 'internal_error', message: 'the reply could not be encoded' } }))];
    }
  }
}

/** @param {unknown[]} flat an XINFO row [name, value, ...] @returns {Record<string, unknown>} */
function flatToObject(flat) {
  /** @type {Record<string, unknown>} */
  const object = {};
  for (let i = 0; i + 1 < flat.length; i += 2) object[String(flat[i])] = flat[i + 1];
  return object;
}
