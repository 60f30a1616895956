// @ts-check
/** The wait before a reconnect or a resubscribe: full-jitter exponential backoff. @module */

export class Backoff {
  #attempt = 0;
  #cap;

  /** @param {number} cap ms, the longest wait. */
  constructor(cap) {
    this.#cap = cap;
  }

  /** Full jitter: random(0, min(cap, base * 2^attempt)), then one attempt more. */
  next(/** @type {number} */ base) {
    const ceiling = Math.min(this.#cap, base * 2 ** this.#attempt);
    this.#attempt += 1;
    return Math.random() * ceiling;
  }

  /** A connection stayed open long enough: start again from the base. */
  reset() {
    this.#attempt = 0;
  }
}
