// The two timed loops every instance runs: closing polls whose time has come, and
// publishing the coalesced tallies that are due. Both are Lua scripts that any number of
// instances may run at once (store.js): each poll is closed, and each tally sent, once.
import { Backoff } from './worker.js';

/** Least pause between two flushes, whatever RT_POLL_TALLY_PER_SECOND. */
const MIN_FLUSH_MS = 20;

export class Loop {
  /**
   * @param {string} name
   * @param {number} intervalMs
   * @param {() => Promise<void>} step
   * @param {import('./log.js').Logger} log
   * @param {import('./metrics.js').Metrics} metrics
   */
  constructor(name, intervalMs, step, log, metrics) {
    this.name = name;
    this.intervalMs = intervalMs;
    this.step = step;
    this.log = log;
    this.metrics = metrics;
    this.stopped = false;
    /** @type {NodeJS.Timeout | null} */
    this.timer = null;
    this.backoff = new Backoff();
  }

  start() {
    const tick = async () => {
      let wait = this.intervalMs;
      try {
        await this.step();
        this.backoff.reset();
      } catch (err) {
        this.metrics.busErrors.inc({ process: 'poll' });
        wait = Math.max(wait, this.backoff.next());
        this.log.error(`${this.name} failed; retrying`, { error: /** @type {Error} */ (err).message });
      }
      if (!this.stopped) this.timer = setTimeout(tick, wait);
    };
    this.timer = setTimeout(tick, 0);
  }

  stop() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

/**
 * @param {import('./store.js').PollStore} store
 * @param {import('./settings.js').Settings} settings
 * @param {import('./log.js').Logger} log
 * @param {import('./metrics.js').Metrics} metrics
 */
export function pollLoops(store, settings, log, metrics) {
  const closer = new Loop('closer', settings.closeIntervalMs, async () => {
    const closed = await store.closeDue();
    for (const poll of closed) log.info('poll closed', { poll });
    metrics.closes.inc(closed.length);
  }, log, metrics);
  const flusher = new Loop('tally flush', Math.max(MIN_FLUSH_MS, store.tallyIntervalMs / 4), async () => {
    metrics.tallies.inc(await store.flushTallies());
  }, log, metrics);
  return [closer, flusher];
}
