// The poll service: node src/main.js (docs/polls.md). Exits 2 on a bad setting, 3 when the
// registry refuses its namespace, 0 after SIGTERM or SIGINT.
import { readFileSync } from 'node:fs';

import { Redis } from 'ioredis';

import { Handlers } from './handlers.js';
import { healthServer } from './http.js';
import { pollLoops } from './loops.js';
import { createLogger } from './log.js';
import { Metrics } from './metrics.js';
import { Announcer, RegistryRefused } from './registry.js';
import { SERVICE, SettingsError, loadSettings, redisTarget } from './settings.js';
import { PollStore } from './store.js';
import { Backoff, Worker } from './worker.js';

/** Time each part gets to stop on shutdown. */
const STOP_GRACE_MS = 5000;
const COMMAND_TIMEOUT_MS = 10_000;

/** @param {import('./settings.js').Settings} settings @param {string} role */
function redisOptions(settings, role) {
  const tls = settings.redisUrl.startsWith('rediss:')
    ? {
      ...(settings.redisCaFile ? { ca: readFileSync(settings.redisCaFile) } : {}),
      ...(settings.redisCertFile ? { cert: readFileSync(settings.redisCertFile) } : {}),
      ...(settings.redisKeyFile ? { key: readFileSync(settings.redisKeyFile) } : {}),
    }
    : undefined;
  return {
    ...(settings.redisUsername ? { username: settings.redisUsername } : {}),
    ...(settings.redisPassword ? { password: settings.redisPassword } : {}),
    ...(tls ? { tls } : {}),
    connectionName: `${SERVICE}-${settings.instanceId}-${role}`,
    commandTimeout: COMMAND_TIMEOUT_MS,
    // Two more tries of a command that meets a connection error, as every process does.
    maxRetriesPerRequest: 2,
    /** @param {number} times */
    retryStrategy: (times) => Math.min(2000, 50 * 2 ** Math.min(times, 6)) * (0.5 + Math.random() / 2),
    lazyConnect: true,
  };
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function main() {
  let settings;
  try {
    settings = loadSettings(process.env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    process.stderr.write(`poll: invalid setting: ${err.message}\n`);
    process.exit(2);
  }
  const log = createLogger('polls_service', settings);
  const redis = new Redis(settings.redisUrl, redisOptions(settings, 'commands'));
  const reader = new Redis(settings.redisUrl, redisOptions(settings, 'reader'));
  for (const [name, connection] of [['commands', redis], ['reader', reader]]) {
    /** @type {Redis} */ (connection).on('error', (err) => log.warning('redis connection error', { connection: name, error: err.message }));
  }
  const metrics = new Metrics(SERVICE);
  const store = new PollStore(redis, settings);
  const handlers = new Handlers(store, settings);
  const worker = new Worker({ reader, redis, handlers, settings, metrics, log, service: SERVICE });
  const announcer = new Announcer(redis, { service: SERVICE, instance: settings.instanceId, ttlMs: settings.registryTtlMs, log });

  // Health first (live at once, ready once the worker reads), then the announcement: a
  // refused claim stops the service; an unreachable Redis is waited for, with backoff.
  const server = healthServer({ redis, worker, metrics });
  await new Promise((resolve) => { server.listen(settings.port, settings.host, () => resolve(undefined)); });
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const backoff = new Backoff();
  for (;;) {
    try {
      await announcer.announce();
      break;
    } catch (err) {
      if (err instanceof RegistryRefused) {
        log.error('the namespace registry refused this service', { error: err.message });
        process.exit(3);
      }
      const wait = backoff.next();
      log.error('cannot announce in the registry; retrying', { error: /** @type {Error} */ (err).message, retry_in_ms: Math.round(wait) });
      await sleep(wait);
    }
  }
  announcer.start();
  const loops = pollLoops(store, settings, log, metrics);
  for (const loop of loops) loop.start();
  const running = worker.run();
  log.info('poll service serving', {
    url: `http://${host}:${address.port}`, stream: worker.stream, group: worker.group,
    consumer: worker.consumer, redis: redisTarget(settings.redisUrl),
  });

  let stopping = false;
  const stop = async (/** @type {string} */ signal) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    const closed = new Promise((resolve) => { server.close(() => resolve(undefined)); });
    server.closeIdleConnections();
    announcer.stop();
    for (const loop of loops) loop.stop();
    worker.stop();
    await Promise.race([Promise.all([closed, running]), sleep(STOP_GRACE_MS)]);
    // The reader may sit in a blocked XREADGROUP: cut it instead of waiting for it.
    reader.disconnect();
    await redis.quit().catch(() => redis.disconnect());
    process.exit(0);
  };
  process.on('SIGTERM', () => { stop('SIGTERM'); });
  process.on('SIGINT', () => { stop('SIGINT'); });
}

main().catch((err) => {
  process.stderr.write(`poll: ${err.stack ?? err}\n`);
  process.exit(1);
});
