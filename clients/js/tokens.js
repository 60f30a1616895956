// @ts-check
/** The token a connection authenticates with: cached, renewed when refused or expiring. @module */

// A cached token with less life than this (ms) is not worth connecting with.
const MIN_TOKEN_LIFE = 5_000;

export class Tokens {
  #source;
  /** @type {string | null} The last token the function gave (null for a fixed token). */
  #token = null;
  #stale = false;

  /** @param {string | (() => string | Promise<string>)} source */
  constructor(source) {
    this.#source = source;
  }

  /** A function gives the tokens: they can be renewed. */
  get renewable() {
    return typeof this.#source === "function";
  }

  /** The gateway refused the cached token: the next connection asks for a new one. */
  refused() {
    this.#stale = true;
  }

  /** The token to connect with: the cached one unless refused, expiring, or never fetched. */
  async current() {
    const source = this.#source;
    if (typeof source !== "function") return source;
    const exp = tokenExpiry(this.#token);
    const expiring = exp != null && exp * 1000 - Date.now() < MIN_TOKEN_LIFE;
    if (this.#token == null || this.#stale || expiring) {
      this.#token = await source();
      this.#stale = false;
    }
    return this.#token;
  }

  /** A new token from the function, for a refresh; cached once the gateway accepts it. */
  fetch() {
    return /** @type {() => string | Promise<string>} */ (this.#source)();
  }

  /** The gateway accepted a refreshed token. */
  accepted(/** @type {string} */ token) {
    this.#token = token;
  }

  /**
   * ms until the open connection should re-authenticate: `refreshBefore` ahead of `exp`, at
   * most half the token's remaining life, never sooner than a second (a failing refresh near
   * `exp` must not spin); null when nothing is to be refreshed.
   * @param {number | false} refreshBefore
   * @returns {number | null}
   */
  refreshDelay(refreshBefore) {
    const exp = tokenExpiry(this.#token);
    if (exp == null || !this.renewable || refreshBefore === false) return null;
    const lead = Math.min(refreshBefore, (exp * 1000 - Date.now()) / 2);
    return Math.max(1000, exp * 1000 - Date.now() - lead);
  }
}

/**
 * A JWT's `exp` (seconds since the epoch), read without verifying it; null if unreadable.
 * @param {string | null} token
 * @returns {number | null}
 */
function tokenExpiry(token) {
  try {
    const payload = /** @type {string} */ (token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload)).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}
