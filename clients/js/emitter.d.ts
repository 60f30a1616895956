/**
 * A minimal event emitter; a listener that throws is reported, never breaks the client.
 * @template {Record<string, (...args: any[]) => void>} Events
 */
export class Emitter<Events extends Record<string, (...args: any[]) => void>> {
    /**
     * @template {keyof Events} K
     * @param {K} name
     * @param {Events[K]} listener
     * @returns {() => void} Removes the listener.
     */
    on<K extends keyof Events>(name: K, listener: Events[K]): () => void;
    /** @template {keyof Events} K @param {K} name @param {Events[K]} listener */
    off<K extends keyof Events>(name: K, listener: Events[K]): void;
    /** @protected @param {keyof Events} name @param {...any} args */
    protected emit(name: keyof Events, ...args: any[]): void;
    #private;
}
