// What a poll request may hold: pure checks of request data, no I/O. Each check returns
// the values a store call needs or throws a PollError with a code and a readable message.

export class PollError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {Record<string, unknown>} [extra] more fields for the client
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.code = code;
    this.extra = extra;
  }

  /** @returns {import('./envelope.js').ErrorBody} */
  body() {
    return { ...this.extra, code: this.code, message: this.message };
  }
}

export const LIMITS = Object.freeze({
  questionChars: 500,
  optionChars: 100,
  minOptions: 2,
  maxOptions: 20,
  keyChars: 128,
  minClosesIn: 0.1,
});

/** The fields each client request takes besides type and ref (the announcement's too). */
export const REQUEST_FIELDS = Object.freeze({
  'poll.create': ['question', 'options', 'closes_in', 'key'],
  'poll.vote': ['poll', 'option', 'key'],
  'poll.get': ['poll'],
});

/** Poll ids are made by newPollId in store.js: 16 lowercase hex digits. */
const POLL_ID = /^[0-9a-f]{16}$/;
const POSITION = /^\d{1,20}(-\d{1,20})?$/;
const CHANNEL_PREFIX = 'poll:';

/** @param {string} text @returns {number} characters, as a person counts them */
function chars(text) {
  return [...text].length;
}

/**
 * @param {Record<string, unknown>} data
 * @param {readonly string[]} allowed
 * @param {string} type
 */
function onlyFields(data, allowed, type) {
  for (const field of Object.keys(data)) {
    if (!allowed.includes(field)) {
      throw new PollError('bad_request', `unknown field '${field}' in ${type}; it takes ${allowed.join(', ')}`);
    }
  }
}

/**
 * @param {unknown} value
 * @param {string} field
 * @param {number} maxChars
 * @returns {string} the text, trimmed
 */
function text(value, field, maxChars) {
  if (typeof value !== 'string') throw new PollError('bad_request', `'${field}' must be a string`);
  const trimmed = value.trim();
  if (trimmed === '') throw new PollError('bad_request', `'${field}' is empty`);
  if (chars(trimmed) > maxChars) {
    throw new PollError('bad_request', `'${field}' has more than ${maxChars} characters`);
  }
  return trimmed;
}

/** @param {unknown} value @returns {string | null} */
function optionalKey(value) {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value === '' || chars(value) > LIMITS.keyChars) {
    throw new PollError('bad_request', `'key' must be a string of 1-${LIMITS.keyChars} characters`);
  }
  return value;
}

/**
 * @param {unknown} value
 * @returns {string} a poll id; one that cannot exist is poll_not_found, not a malformed field
 */
export function pollId(value) {
  if (typeof value !== 'string') throw new PollError('bad_request', "'poll' must be a string");
  if (!POLL_ID.test(value)) throw notFound(value);
  return value;
}

/** @param {string} id */
export function notFound(id) {
  return new PollError('poll_not_found', `poll '${id}' does not exist`, { poll: id });
}

/**
 * @param {Record<string, unknown>} data
 * @param {number} maxDurationSeconds
 */
export function checkCreate(data, maxDurationSeconds) {
  onlyFields(data, REQUEST_FIELDS['poll.create'], 'poll.create');
  const question = text(data.question, 'question', LIMITS.questionChars);
  const { options } = data;
  if (!Array.isArray(options)) throw new PollError('bad_request', "'options' must be an array of strings");
  if (options.length < LIMITS.minOptions || options.length > LIMITS.maxOptions) {
    throw new PollError('bad_request', `a poll has ${LIMITS.minOptions} to ${LIMITS.maxOptions} options`);
  }
  const cleaned = options.map((option) => text(option, 'options', LIMITS.optionChars));
  if (new Set(cleaned).size !== cleaned.length) throw new PollError('bad_request', 'the options must differ');
  const closesIn = data.closes_in;
  if (typeof closesIn !== 'number' || !Number.isFinite(closesIn)
      || closesIn < LIMITS.minClosesIn || closesIn > maxDurationSeconds) {
    throw new PollError('bad_request',
      `'closes_in' must be a number of seconds from ${LIMITS.minClosesIn} to ${maxDurationSeconds}`);
  }
  return { question, options: cleaned, closesInMs: Math.round(closesIn * 1000), key: optionalKey(data.key) };
}

/** @param {Record<string, unknown>} data */
export function checkVote(data) {
  onlyFields(data, REQUEST_FIELDS['poll.vote'], 'poll.vote');
  const poll = pollId(data.poll);
  if (typeof data.option !== 'string') throw new PollError('bad_request', "'option' must be a string");
  const key = optionalKey(data.key);
  if (key === null) throw new PollError('bad_request', "'key' is required: the vote's idempotency key");
  return { poll, option: data.option, key };
}

/** @param {Record<string, unknown>} data */
export function checkGet(data) {
  onlyFields(data, REQUEST_FIELDS['poll.get'], 'poll.get');
  return { poll: pollId(data.poll) };
}

/**
 * The bus's `subscribe` request (docs/bus.md "The subscribe request"). A malformed `since`
 * is not an error: it is answered `recovered: false`.
 * @param {Record<string, unknown>} data
 * @returns {{poll: string, channel: string, since: string | null, sinceValid: boolean}}
 */
export function checkSubscribe(data) {
  const { channel, since } = data;
  if (typeof channel !== 'string') throw new PollError('bad_request', "'channel' must be a string");
  if (!channel.startsWith(CHANNEL_PREFIX)) {
    throw new PollError('invalid_channel', `channel '${channel}' is not in the namespace 'poll'`);
  }
  const poll = channel.slice(CHANNEL_PREFIX.length);
  if (!POLL_ID.test(poll)) throw notFound(poll);
  if (since === undefined || since === null) return { poll, channel, since: null, sinceValid: true };
  const valid = typeof since === 'string' && POSITION.test(since);
  return { poll, channel, since: valid ? normalPosition(/** @type {string} */ (since)) : null, sinceValid: valid };
}

/** @param {string} position `ms` or `ms-seq` @returns {string} `ms-seq` */
function normalPosition(position) {
  const [ms, seq = '0'] = position.split('-');
  return `${BigInt(ms)}-${BigInt(seq)}`;
}
