// What each request type does: checks (rules.js), then one store call. Returns the
// outcome of the reply; a PollError becomes an error reply, a RedisFailure propagates (the
// worker leaves the entry pending), anything else is internal_error (worker.js).
import { PollError, checkCreate, checkGet, checkSubscribe, checkVote, notFound } from './rules.js';

const MESSAGES = {
  poll_closed: (/** @type {string} */ id) => `poll '${id}' is closed`,
  unknown_option: (/** @type {string} */ id) => `that is not an option of poll '${id}'`,
  poll_not_found: (/** @type {string} */ id) => `poll '${id}' does not exist`,
};

/** @param {import('./envelope.js').Request} request @returns {string} */
function authenticated(request) {
  if (request.user === null) {
    throw new PollError('unauthenticated', `${request.type} needs an authenticated user`);
  }
  return request.user;
}

export class Handlers {
  /**
   * @param {import('./store.js').PollStore} store
   * @param {import('./settings.js').Settings} settings
   */
  constructor(store, settings) {
    this.store = store;
    this.settings = settings;
    /** @type {Record<string, (request: import('./envelope.js').Request) => Promise<Record<string, unknown>>>} */
    this.byType = {
      'poll.create': (request) => this.create(request),
      'poll.vote': (request) => this.vote(request),
      'poll.get': (request) => this.get(request),
      subscribe: (request) => this.subscribe(request),
    };
  }

  /** @param {string} type */
  knows(type) {
    return Object.hasOwn(this.byType, type);
  }

  /**
   * @param {import('./envelope.js').Request} request
   * @returns {Promise<import('./envelope.js').Outcome>}
   */
  async handle(request) {
    if (!this.knows(request.type)) {
      return { ok: false, error: { code: 'unknown_type', message: `unknown request type '${request.type.slice(0, 64)}'` } };
    }
    try {
      return { ok: true, data: await this.byType[request.type](request) };
    } catch (err) {
      if (err instanceof PollError) return { ok: false, error: err.body() };
      throw err;
    }
  }

  /** @param {import('./envelope.js').Request} request */
  async create(request) {
    const user = authenticated(request);
    const poll = checkCreate(request.data, this.settings.maxDurationSeconds);
    return this.store.create(poll, user, request.id);
  }

  /** @param {import('./envelope.js').Request} request */
  async vote(request) {
    const user = authenticated(request);
    const vote = checkVote(request.data);
    const result = await this.store.vote(vote, user);
    if (result.ok) return result.data;
    const code = /** @type {keyof MESSAGES} */ (result.code);
    throw new PollError(code, MESSAGES[code](vote.poll), { poll: vote.poll });
  }

  /** @param {import('./envelope.js').Request} request */
  async get(request) {
    const { poll } = checkGet(request.data);
    const state = await this.store.read(poll, null);
    if (state === null) throw notFound(poll);
    return {
      poll,
      channel: `poll:${poll}`,
      question: state.question,
      options: state.options,
      counts: state.counts,
      closed: state.closed,
      closes_at: state.closes_at,
      position: state.position,
    };
  }

  /** The bus's subscribe (docs/bus.md): the channel's position, and a replay after since. */
  async subscribe(/** @type {import('./envelope.js').Request} */ request) {
    const { poll, since, sinceValid } = checkSubscribe(request.data);
    const state = await this.store.read(poll, since);
    if (state === null) throw notFound(poll);
    if (since === null && sinceValid) return { channel: `poll:${poll}`, position: state.position };
    return {
      channel: `poll:${poll}`,
      position: state.position,
      recovered: sinceValid && state.recovered,
      events: sinceValid && state.recovered ? state.events : [],
    };
  }
}
