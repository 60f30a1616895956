// What each request type answers (src/handlers.js), over a store that records its calls:
// the rules between a request and the store, without Redis (tests/polls has the real one).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Handlers } from '../src/handlers.js';
import { loadSettings } from '../src/settings.js';

const POLL = '0123456789abcdef';

/** A store answering `vote` with `result` and `read` with `state`. */
function recordingStore({ result = { ok: true, data: { poll: POLL } }, state = null } = {}) {
  const calls = [];
  return {
    calls,
    create: async (...args) => { calls.push(['create', ...args]); return { poll: POLL }; },
    vote: async (...args) => { calls.push(['vote', ...args]); return result; },
    read: async (...args) => { calls.push(['read', ...args]); return state; },
  };
}

const request = (type, data, user = 'alice') => ({ id: 'r1', ts: 1, type, trace: 't', gw: 'g', conn: 'g.1', user, data, noreply: false });

test('an unknown type is unknown_type, and the store is not asked', async () => {
  const store = recordingStore();
  const outcome = await new Handlers(store, loadSettings({})).handle(request('poll.nothing', {}));
  assert.deepEqual(outcome, { ok: false, error: { code: 'unknown_type', message: "unknown request type 'poll.nothing'" } });
  assert.deepEqual(store.calls, []);
});

test('a vote without a user is unauthenticated before anything else is looked at', async () => {
  const store = recordingStore();
  const outcome = await new Handlers(store, loadSettings({})).handle(request('poll.vote', { junk: 1 }, null));
  assert.equal(outcome.ok, false);
  assert.equal(outcome.ok === false && outcome.error.code, 'unauthenticated');
  assert.deepEqual(store.calls, []);
});

test("a refusal of the store's becomes that code, with the poll and a message", async () => {
  const store = recordingStore({ result: { ok: false, code: 'poll_closed' } });
  const outcome = await new Handlers(store, loadSettings({})).handle(request('poll.vote', { poll: POLL, option: 'a', key: 'k' }));
  assert.deepEqual(outcome, { ok: false, error: { poll: POLL, code: 'poll_closed', message: `poll '${POLL}' is closed` } });
  assert.deepEqual(store.calls, [['vote', { poll: POLL, option: 'a', key: 'k' }, 'alice']]);
});

test('subscribe with a malformed since reads no replay and answers recovered false', async () => {
  const state = { position: '5-0', recovered: true, events: [{ event: 'poll.tally' }] };
  const store = recordingStore({ state });
  const outcome = await new Handlers(store, loadSettings({})).handle(request('subscribe', { channel: `poll:${POLL}`, since: 'x' }));
  assert.deepEqual(outcome, { ok: true, data: { channel: `poll:${POLL}`, position: '5-0', recovered: false, events: [] } });
  assert.deepEqual(store.calls, [['read', POLL, null]]);
});

test('a create passes the checked poll, the user and the request id', async () => {
  const store = recordingStore();
  await new Handlers(store, loadSettings({})).handle(request('poll.create', { question: 'Q', options: ['a', 'b'], closes_in: 2 }));
  assert.deepEqual(store.calls, [['create', { question: 'Q', options: ['a', 'b'], closesInMs: 2000, key: null }, 'alice', 'r1']]);
});
