/** The wait before a reconnect or a resubscribe: full-jitter exponential backoff. @module */
export class Backoff {
    /** @param {number} cap ms, the longest wait. */
    constructor(cap: number);
    /** Full jitter: random(0, min(cap, base * 2^attempt)), then one attempt more. */
    next(base: number): number;
    /** A connection stayed open long enough: start again from the base. */
    reset(): void;
    #private;
}
