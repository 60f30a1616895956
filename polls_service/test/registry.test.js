// The announcement (src/registry.js) and the worker's backoff (src/worker.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { pack, unpack } from '../src/codec.js';
import { NAMESPACES, announcement } from '../src/registry.js';
import { Backoff } from '../src/worker.js';

test('the announcement has the envelope, the requests and the namespace policy', () => {
  const value = /** @type {Record<string, any>} */ (unpack(pack(announcement('poll', 'i1', 7))));
  assert.equal(value.v, 1);
  assert.equal(value.kind, 'announcement');
  assert.equal(value.ts, 7);
  assert.match(value.id, /^[0-9a-f]{32}$/);
  assert.equal(value.service, 'poll');
  assert.deepEqual(Object.keys(value.requests).sort(), ['poll.create', 'poll.get', 'poll.vote']);
  for (const type of Object.keys(value.requests)) assert.ok(type.startsWith('poll.'));
  assert.deepEqual(value.namespaces, [{ name: 'poll', access: 'authenticated', history: true, presence: false }]);
  assert.deepEqual(value.namespaces, NAMESPACES);
});

test('the backoff doubles up to its cap, with jitter, and starts again after a reset', () => {
  const backoff = new Backoff(100, 1000);
  const waits = Array.from({ length: 6 }, () => backoff.next());
  const caps = [100, 200, 400, 800, 1000, 1000];
  waits.forEach((wait, i) => assert.ok(wait >= caps[i] / 2 && wait <= caps[i], `${i}: ${wait}`));
  backoff.reset();
  assert.ok(backoff.next() <= 100);
});
