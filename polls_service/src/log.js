// Logs: one JSON object per line on stderr ({ts, level, logger, msg, ...fields}), or a
// readable line on a terminal (RT_LOG_FORMAT auto), as the Python processes write them.
const LEVELS = { debug: 10, info: 20, warning: 30, error: 40 };

/**
 * @typedef {{debug: LogFn, info: LogFn, warning: LogFn, error: LogFn, enabled: (level: keyof LEVELS) => boolean}} Logger
 * @typedef {(msg: string, fields?: Record<string, unknown>) => void} LogFn
 */

/**
 * @param {string} name
 * @param {{logLevel: string, logFormat: string}} settings
 * @param {(line: string) => void} [write]
 * @returns {Logger}
 */
export function createLogger(name, settings, write = (line) => process.stderr.write(`${line}\n`)) {
  const threshold = LEVELS[/** @type {keyof LEVELS} */ (settings.logLevel)] ?? LEVELS.info;
  const json = settings.logFormat === 'json' || (settings.logFormat === 'auto' && !process.stderr.isTTY);
  /** @param {keyof LEVELS} level @returns {LogFn} */
  const at = (level) => (msg, fields = {}) => {
    if (LEVELS[level] < threshold) return;
    const ts = new Date().toISOString();
    if (json) {
      write(JSON.stringify({ ts, level, logger: name, msg, ...fields }, plain));
    } else {
      const extra = Object.entries(fields).map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value, plain)}`).join(' ');
      write(`${ts} ${level.toUpperCase().padEnd(7)} ${name}: ${msg}${extra ? ` ${extra}` : ''}`);
    }
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warning: at('warning'),
    error: at('error'),
    enabled: (level) => LEVELS[level] >= threshold,
  };
}

/** JSON.stringify replacer: errors as their message, big integers as strings. */
function plain(/** @type {string} */ _key, /** @type {unknown} */ value) {
  if (value instanceof Error) return value.message;
  if (typeof value === 'bigint') return value.toString();
  return value;
}
