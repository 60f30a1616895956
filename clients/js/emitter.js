// @ts-check
/**
 * A minimal event emitter; a listener that throws is reported, never breaks the client.
 * @template {Record<string, (...args: any[]) => void>} Events
 */
export class Emitter {
  /** @type {Map<keyof Events, Set<Function>>} */
  #listeners = new Map();

  /**
   * @template {keyof Events} K
   * @param {K} name
   * @param {Events[K]} listener
   * @returns {() => void} Removes the listener.
   */
  on(name, listener) {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => this.off(name, listener);
  }

  /** @template {keyof Events} K @param {K} name @param {Events[K]} listener */
  off(name, listener) {
    this.#listeners.get(name)?.delete(listener);
  }

  /** @protected @param {keyof Events} name @param {...any} args */
  emit(name, ...args) {
    for (const listener of [...(this.#listeners.get(name) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        console.error(`realtime: a '${String(name)}' listener threw`, error);
      }
    }
  }
}
