// The pure checks of request data (src/rules.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PollError, checkCreate, checkGet, checkSubscribe, checkVote } from '../src/rules.js';

const refused = (fn, code, words) => assert.throws(fn, (err) => err instanceof PollError && err.code === code && err.message.includes(words));

test('a create is trimmed and its duration converted to ms', () => {
  const poll = checkCreate({ question: ' Tea? ', options: [' yes', 'no '], closes_in: 1.5 }, 60);
  assert.deepEqual(poll, { question: 'Tea?', options: ['yes', 'no'], closesInMs: 1500, key: null });
});

test('a create refuses what is malformed, naming it', () => {
  refused(() => checkCreate({ question: 'Q', options: ['a'], closes_in: 1 }, 60), 'bad_request', '2 to 20');
  refused(() => checkCreate({ question: 'Q', options: ['a', 'a '], closes_in: 1 }, 60), 'bad_request', 'differ');
  refused(() => checkCreate({ question: 'Q', options: ['a', 'b'], closes_in: 61 }, 60), 'bad_request', 'closes_in');
  refused(() => checkCreate({ question: 'Q', options: ['a', 'b'], closes_in: Number.NaN }, 60), 'bad_request', 'closes_in');
  refused(() => checkCreate({ question: 'Q', options: ['a', 'b'], closes_in: 1, key: '' }, 60), 'bad_request', 'key');
  refused(() => checkCreate({ question: 'Q', options: ['a', 'b'], closes_in: 1, extra: 1 }, 60), 'bad_request', "'extra'");
  refused(() => checkCreate({ question: '😀'.repeat(501), options: ['a', 'b'], closes_in: 1 }, 60), 'bad_request', '500');
});

test('characters are counted as people count them, not as UTF-16 units', () => {
  const poll = checkCreate({ question: '😀'.repeat(500), options: ['a', 'b'], closes_in: 1 }, 60);
  assert.equal([...poll.question].length, 500);
});

test('a vote needs its key; a poll id that cannot exist is not found', () => {
  refused(() => checkVote({ poll: '0123456789abcdef', option: 'a' }), 'bad_request', "'key'");
  refused(() => checkVote({ poll: 'nope', option: 'a', key: 'k' }), 'poll_not_found', 'nope');
  refused(() => checkGet({ poll: 7 }), 'bad_request', "'poll'");
  assert.deepEqual(checkVote({ poll: '0123456789abcdef', option: 'a', key: 'k' }), { poll: '0123456789abcdef', option: 'a', key: 'k' });
});

test('subscribe takes poll channels only and judges since without refusing it', () => {
  refused(() => checkSubscribe({ channel: 'chat:general' }), 'invalid_channel', 'poll');
  assert.deepEqual(checkSubscribe({ channel: 'poll:0123456789abcdef' }), { poll: '0123456789abcdef', channel: 'poll:0123456789abcdef', since: null, sinceValid: true });
  assert.equal(checkSubscribe({ channel: 'poll:0123456789abcdef', since: '17' }).since, '17-0');
  assert.equal(checkSubscribe({ channel: 'poll:0123456789abcdef', since: '007-01' }).since, '7-1');
  assert.equal(checkSubscribe({ channel: 'poll:0123456789abcdef', since: 'x' }).sinceValid, false);
  assert.equal(checkSubscribe({ channel: 'poll:0123456789abcdef', since: 5 }).sinceValid, false);
});
