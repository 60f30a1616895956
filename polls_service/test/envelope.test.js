// Decoding requests and reply addresses, and building replies (src/envelope.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { pack, unpack } from '../src/codec.js';
import { decodeReplyAddress, decodeRequest, reply } from '../src/envelope.js';

const request = {
  v: 1, kind: 'request', id: 'r1', ts: 1795755766078, type: 'poll.get', trace: 't', gw: 'gw-1',
  conn: 'gw-1.1', user: 'alice', data: { poll: 'p' },
};

test('the worked example of docs/bus.md decodes', () => {
  const hex = '8aa17601a46b696e64a772657175657374a26964d9206639656633396561616237303837383066383863643039'
    + '356436333834636632a27473cf000001a21b62713ea474797065a9636861742e73656e64a57472616365d92065'
    + '35333238653463643436303665373338393936613336393033656363356232a26777ab67772d33306439396531'
    + '31a4636f6e6ead67772d33306439396531312e31a475736572a5616c696365a46461746182a4726f6f6da76765'
    + '6e6572616ca474657874a26869';
  const decoded = decodeRequest(Buffer.from(hex, 'hex'));
  assert.ok('request' in decoded);
  assert.equal(decoded.request.type, 'chat.send');
  assert.equal(decoded.request.ts, 1795755766078);
  assert.deepEqual(decoded.request.data, { room: 'general', text: 'hi' });
  assert.equal(decoded.request.noreply, false);
});

test('a request without a user, or with a nil one, has user null', () => {
  const { user, ...anonymous } = request;
  for (const value of [anonymous, { ...request, user: null }]) {
    const decoded = decodeRequest(pack(value));
    assert.ok('request' in decoded);
    assert.equal(decoded.request.user, null);
  }
});

test('what is not a valid request says why', () => {
  const cases = [
    [undefined, "no field 'e'"],
    [Buffer.from([0xc1]), 'not msgpack'],
    [pack([1, 2]), 'not a map'],
    [pack({ ...request, v: 2 }), 'version'],
    [pack({ ...request, v: true }), 'version'],
    [pack({ ...request, kind: 'reply' }), 'kind'],
    [pack({ ...request, type: new Uint8Array([104]) }), "'type'"],
    [pack({ ...request, ts: 1.5 }), "'ts'"],
    [pack({ ...request, user: 3 }), "'user'"],
    [pack({ ...request, data: [] }), "'data'"],
  ];
  for (const [bytes, words] of cases) {
    const decoded = decodeRequest(bytes);
    assert.ok('error' in decoded && decoded.error.includes(words), `${words}: ${JSON.stringify(decoded)}`);
  }
});

test('only noreply true makes a notification', () => {
  for (const [value, expected] of [[true, true], [1, false], ['true', false]]) {
    const decoded = decodeRequest(pack({ ...request, noreply: value }));
    assert.ok('request' in decoded);
    assert.equal(decoded.request.noreply, expected);
  }
});

test('a reply address needs three strings', () => {
  assert.deepEqual(decodeReplyAddress(pack({ gw: 'g', conn: 'c', re: 'r', more: 1 })), { gw: 'g', conn: 'c', re: 'r' });
  assert.equal(decodeReplyAddress(pack({ gw: 'g', conn: 'c' })), null);
  assert.equal(decodeReplyAddress(Buffer.from('junk')), null);
  assert.equal(decodeReplyAddress(undefined), null);
});

test('a reply carries the envelope, re and conn, and data or error', () => {
  const ok = unpack(pack(reply({ gw: 'g', conn: 'c', re: 'r' }, { ok: true, data: {} }, 5)));
  assert.deepEqual({ ...ok, id: 'x' }, { v: 1, kind: 'reply', id: 'x', ts: 5, re: 'r', conn: 'c', ok: true, data: {} });
  assert.match(/** @type {{id: string}} */ (ok).id, /^[0-9a-f]{32}$/);
  const refused = unpack(pack(reply({ gw: 'g', conn: 'c', re: 'r' }, { ok: false, error: { code: 'poll_closed', message: 'm' } }, 5)));
  assert.deepEqual(/** @type {{error: unknown}} */ (refused).error, { code: 'poll_closed', message: 'm' });
});
