// /livez, /readyz and /metrics (docs/operations.md): liveness is "the process answers",
// readiness "Redis answers and the worker reads its stream". Nothing internal is shown.
import { createServer } from 'node:http';

const PING_TIMEOUT_MS = 1000;

/**
 * @param {{redis: import('ioredis').Redis, worker: import('./worker.js').Worker,
 *   metrics: import('./metrics.js').Metrics}} parts
 */
export function healthServer({ redis, worker, metrics }) {
  const ready = async () => {
    if (!worker.healthy) return false;
    try {
      const answer = await Promise.race([
        redis.ping(),
        new Promise((_, reject) => { setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS).unref(); }),
      ]);
      return answer === 'PONG';
    } catch {
      return false;
    }
  };
  return createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    /** @param {number} status @param {string} body @param {string} [type] */
    const send = (status, body, type = 'text/plain; charset=utf-8') => {
      response.writeHead(status, { 'content-type': type });
      response.end(body);
    };
    if (request.method !== 'GET') return send(405, 'method not allowed\n');
    if (path === '/livez') return send(200, 'ok\n');
    if (path === '/readyz') {
      ready().then((ok) => send(ok ? 200 : 503, ok ? 'ready\n' : 'not ready\n'));
      return undefined;
    }
    if (path === '/metrics') {
      ready()
        .then((ok) => {
          metrics.ready.set(ok ? 1 : 0);
          return metrics.registry.metrics();
        })
        .then((text) => send(200, text, metrics.registry.contentType))
        .catch(() => send(500, 'metrics failed\n'));
      return undefined;
    }
    return send(404, 'not found\n');
  });
}
