// The service's settings, read once at start from the environment (docs/configuration.md):
// the only reader of process.env. A value that does not parse stops the process (exit 2)
// with an error naming the variable. Secrets never appear in errors or logs.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const SERVICE = 'poll';
export const DEFAULT_PORT = 8104;

export class SettingsError extends Error {}

/**
 * @typedef {object} Settings
 * @property {string} redisUrl
 * @property {string | null} redisUsername
 * @property {string | null} redisPassword
 * @property {string | null} redisCaFile
 * @property {string | null} redisCertFile
 * @property {string | null} redisKeyFile
 * @property {string} host
 * @property {number} port
 * @property {string} instanceId
 * @property {number} batch
 * @property {number} claimIdleMs
 * @property {number} claimIntervalMs
 * @property {string} logLevel
 * @property {string} logFormat
 * @property {number} registryTtlMs
 * @property {number} tallyPerSecond
 * @property {number} keyTtlMs
 * @property {number} retentionMs
 * @property {number} closeIntervalMs
 * @property {number} maxDurationSeconds
 * @property {number} historyMaxlen
 */

/**
 * @param {NodeJS.ProcessEnv} env
 * @returns {Settings}
 * @throws {SettingsError} a value is malformed, below its minimum, or a secret is given twice.
 */
export function loadSettings(env) {
  /** @param {string} name @returns {string | null} */
  const raw = (name) => {
    const value = env[name];
    return value === undefined || value === '' ? null : value;
  };
  /** @param {string} name @returns {string | null} a secret, or the content of its _FILE */
  const secret = (name) => {
    const direct = raw(name);
    const file = raw(`${name}_FILE`);
    if (direct !== null && file !== null) throw new SettingsError(`set ${name} or ${name}_FILE, not both`);
    if (file === null) return direct;
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new SettingsError(`${name}_FILE: cannot read ${file}: ${/** @type {NodeJS.ErrnoException} */ (err).code}`);
    }
  };
  /** @param {string} name @param {number} fallback @param {number} min @param {boolean} [integer] */
  const number = (name, fallback, min, integer = false) => {
    const value = raw(name);
    if (value === null) return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || (integer && !Number.isInteger(parsed)) || value.trim() === '') {
      throw new SettingsError(`${name}: ${JSON.stringify(value)} is not ${integer ? 'an integer' : 'a number'}`);
    }
    if (parsed < min) throw new SettingsError(`${name}: ${value} is below its minimum ${min}`);
    return parsed;
  };
  /** @param {string} name @param {string} fallback @param {string[]} choices */
  const choice = (name, fallback, choices) => {
    const value = (raw(name) ?? fallback).toLowerCase();
    if (!choices.includes(value)) throw new SettingsError(`${name}: ${JSON.stringify(value)} is not one of ${choices.join(', ')}`);
    return value;
  };

  // Its scripts touch keys of several slots and it announces no partitions (docs/polls.md):
  // on a cluster it would fail at its first script, so it says so at once.
  if (['1', 'true', 'yes', 'on'].includes((raw('RT_REDIS_CLUSTER') ?? '').toLowerCase())) {
    throw new SettingsError('RT_REDIS_CLUSTER: the poll service does not run on a Redis Cluster yet');
  }
  const redisUrl = secret('RT_REDIS_URL') ?? 'redis://127.0.0.1:6379/0';
  const redisPassword = secret('RT_REDIS_PASSWORD');
  let parsedUrl;
  try {
    parsedUrl = new URL(redisUrl);
  } catch {
    throw new SettingsError('RT_REDIS_URL: not a URL');
  }
  if (!['redis:', 'rediss:'].includes(parsedUrl.protocol)) throw new SettingsError('RT_REDIS_URL: use redis:// or rediss://');
  if (redisPassword !== null && parsedUrl.password !== '') {
    throw new SettingsError('RT_REDIS_PASSWORD: the URL RT_REDIS_URL has a password too');
  }
  const tlsFiles = ['RT_REDIS_CA_FILE', 'RT_REDIS_CERT_FILE', 'RT_REDIS_KEY_FILE'].filter((name) => raw(name) !== null);
  if (tlsFiles.length > 0 && parsedUrl.protocol !== 'rediss:') throw new SettingsError(`${tlsFiles[0]}: needs a rediss:// URL`);
  if ((raw('RT_REDIS_CERT_FILE') === null) !== (raw('RT_REDIS_KEY_FILE') === null)) {
    throw new SettingsError('RT_REDIS_CERT_FILE and RT_REDIS_KEY_FILE: set both or neither');
  }

  return {
    redisUrl,
    redisUsername: raw('RT_REDIS_USERNAME'),
    redisPassword,
    redisCaFile: raw('RT_REDIS_CA_FILE'),
    redisCertFile: raw('RT_REDIS_CERT_FILE'),
    redisKeyFile: raw('RT_REDIS_KEY_FILE'),
    host: raw('RT_HOST') ?? '127.0.0.1',
    port: number('RT_PORT', DEFAULT_PORT, 0, true),
    instanceId: raw('RT_INSTANCE_ID') ?? randomBytes(4).toString('hex'),
    batch: number('RT_SERVICE_BATCH', 64, 1, true),
    claimIdleMs: number('RT_CLAIM_IDLE_MS', 15000, 100, true),
    claimIntervalMs: number('RT_CLAIM_INTERVAL', 5, 0.05) * 1000,
    logLevel: choice('RT_LOG_LEVEL', 'info', ['debug', 'info', 'warning', 'error']),
    logFormat: choice('RT_LOG_FORMAT', 'auto', ['auto', 'json', 'console']),
    registryTtlMs: number('RT_REGISTRY_TTL', 10, 0.3) * 1000,
    tallyPerSecond: number('RT_POLL_TALLY_PER_SECOND', 4, 0.01),
    keyTtlMs: number('RT_POLL_KEY_TTL', 86400, 1) * 1000,
    retentionMs: number('RT_POLL_RETENTION', 86400, 1) * 1000,
    closeIntervalMs: number('RT_POLL_CLOSE_INTERVAL', 0.25, 0.01) * 1000,
    maxDurationSeconds: number('RT_POLL_MAX_DURATION', 604800, 1),
    historyMaxlen: number('RT_POLL_HISTORY_MAXLEN', 1000, 10, true),
  };
}

/**
 * The Redis URL with neither user, password nor query, for logs.
 * @param {string} url
 */
export function redisTarget(url) {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
}
