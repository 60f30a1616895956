export class Tokens {
    /** @param {string | (() => string | Promise<string>)} source */
    constructor(source: string | (() => string | Promise<string>));
    /** A function gives the tokens: they can be renewed. */
    get renewable(): boolean;
    /** The gateway refused the cached token: the next connection asks for a new one. */
    refused(): void;
    /** The token to connect with: the cached one unless refused, expiring, or never fetched. */
    current(): Promise<string>;
    /** A new token from the function, for a refresh; cached once the gateway accepts it. */
    fetch(): string | Promise<string>;
    /** The gateway accepted a refreshed token. */
    accepted(token: string): void;
    /**
     * ms until the open connection should re-authenticate: `refreshBefore` ahead of `exp`, at
     * most half the token's remaining life, never sooner than a second (a failing refresh near
     * `exp` must not spin); null when nothing is to be refreshed.
     * @param {number | false} refreshBefore
     * @returns {number | null}
     */
    refreshDelay(refreshBefore: number | false): number | null;
    #private;
}
