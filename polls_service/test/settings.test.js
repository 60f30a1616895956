// Settings from the environment (src/settings.js) and the log format (src/log.js).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { createLogger } from '../src/log.js';
import { SettingsError, loadSettings, redisTarget } from '../src/settings.js';

test('defaults are those of docs/configuration.md', () => {
  const settings = loadSettings({});
  assert.equal(settings.port, 8104);
  assert.equal(settings.tallyPerSecond, 4);
  assert.equal(settings.claimIdleMs, 15000);
  assert.equal(settings.claimIntervalMs, 5000);
  assert.equal(settings.registryTtlMs, 10000);
  assert.match(settings.instanceId, /^[0-9a-f]{8}$/);
});

test('a malformed or too small value names its variable', () => {
  assert.throws(() => loadSettings({ RT_POLL_TALLY_PER_SECOND: 'fast' }), (err) => err instanceof SettingsError && err.message.includes('RT_POLL_TALLY_PER_SECOND'));
  assert.throws(() => loadSettings({ RT_SERVICE_BATCH: '0' }), /RT_SERVICE_BATCH: 0 is below its minimum 1/);
  assert.throws(() => loadSettings({ RT_SERVICE_BATCH: '1.5' }), /not an integer/);
  assert.throws(() => loadSettings({ RT_LOG_LEVEL: 'loud' }), /RT_LOG_LEVEL/);
});

test('a secret comes from its _FILE, never from both, and never shows in errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'poll-settings-'));
  writeFileSync(join(dir, 'pw'), ' s3cret \n');
  assert.equal(loadSettings({ RT_REDIS_PASSWORD_FILE: join(dir, 'pw') }).redisPassword, 's3cret');
  assert.throws(() => loadSettings({ RT_REDIS_PASSWORD: 'a', RT_REDIS_PASSWORD_FILE: join(dir, 'pw') }), /not both/);
  assert.throws(() => loadSettings({ RT_REDIS_URL: 'redis://u:hunter2@h', RT_REDIS_PASSWORD: 'x' }), (err) => !err.message.includes('hunter2'));
});

test('the Redis target of logs has no credentials', () => {
  assert.equal(redisTarget('redis://user:pw@10.0.0.5:6379/0?x=1'), 'redis://10.0.0.5:6379/0');
});

test('a JSON log line has ts, level, logger, msg and the fields', () => {
  const lines = [];
  const log = createLogger('polls_service', { logLevel: 'info', logFormat: 'json' }, (line) => lines.push(line));
  log.debug('hidden');
  log.info('hello', { poll: 'p', error: new Error('boom') });
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]);
  assert.deepEqual({ ...entry, ts: 't' }, { ts: 't', level: 'info', logger: 'polls_service', msg: 'hello', poll: 'p', error: 'boom' });
});

test('refuses to start on a Redis Cluster, which it does not support yet', () => {
  assert.throws(
    () => loadSettings({ RT_REDIS_CLUSTER: '1' }),
    (err) => err instanceof SettingsError && err.message.includes('does not run on a Redis Cluster'),
  );
  assert.doesNotThrow(() => loadSettings({ RT_REDIS_CLUSTER: '0' }));
});
