// Helpers of the node tests. They run against real processes that tests/client/test_js_client.py
// starts; it passes their addresses in RT_TEST_* variables (run the tests through pytest, or
// export those variables by hand).
import { createHmac, randomBytes } from "node:crypto";
import { after } from "node:test";
import WebSocket from "ws";

import { connect } from "../realtime.js";

/** @param {string} name */
function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through scripts/test (pytest)`);
  return value;
}

export const env = {
  gatewayUrl: required("RT_TEST_GATEWAY_URL"),
  gatewayHttp: required("RT_TEST_GATEWAY_HTTP"),
  jwtSecret: required("RT_TEST_JWT_SECRET"),
  controlUrl: required("RT_TEST_CONTROL_URL"),
  chatPid: Number(required("RT_TEST_CHAT_PID")),
  bidsPid: Number(required("RT_TEST_BIDS_PID")),
  bidsHttp: required("RT_TEST_BIDS_HTTP"),
  bidsAdminToken: required("RT_TEST_BIDS_ADMIN_TOKEN"),
};

/** A name no other test uses (rooms, users, auctions). */
export function unique(/** @type {string} */ prefix) {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

/** An HS256 JWT for `user`, valid for `ttl` seconds, signed with the gateways' secret. */
export function sign(/** @type {string} */ user, ttl = 3600) {
  const encode = (/** @type {object} */ part) => Buffer.from(JSON.stringify(part)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ sub: user, iat: now, exp: now + ttl })}`;
  const signature = createHmac("sha256", env.jwtSecret).update(body).digest("base64url");
  return `${body}.${signature}`;
}

/** Short timings, so that the tests are quick; a test's own options win. */
const FAST = {
  requestTimeout: 8000,
  connectTimeout: 2000,
  backoffBase: 50,
  backoffCap: 500,
};

const clients = new Set();
after(() => {
  for (const client of clients) client.close();
});

/**
 * A client for `user` (closed when the file's tests end), with a log of its states,
 * disconnects and events.
 * @param {string} user
 * @param {import("../realtime.js").Options & {url?: string}} [options]
 */
export function open(user, options = /** @type {any} */ ({})) {
  const { url = env.gatewayUrl, ...rest } = options;
  const client = connect(url, { token: () => sign(user), WebSocket, ...FAST, ...rest });
  clients.add(client);
  const log = {
    /** @type {string[]} */ states: [],
    /** @type {number[]} */ closes: [],
    /** @type {import("../realtime.js").RealtimeEvent[]} */ events: [],
    /** @type {Error[]} */ errors: [],
  };
  client.on("state", (state) => log.states.push(state));
  client.on("disconnect", ({ code }) => log.closes.push(code));
  client.on("event", (event) => log.events.push(event));
  client.on("error", (error) => log.errors.push(error));
  return { client, log };
}

/**
 * Resolve once `condition()` is truthy (it may be async); reject at the deadline.
 * @template T
 * @param {() => T | Promise<T>} condition
 * @param {{timeout?: number, what?: string}} [options]
 * @returns {Promise<T>}
 */
export async function waitFor(condition, { timeout = 5000, what = String(condition) } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeout} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** @param {string} method @param {string} url @param {object} [body] @param {Record<string, string>} [headers] */
async function call(method, url, body, headers = {}) {
  const response = await fetch(url, {
    method,
    headers: { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${method} ${url}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

/**
 * @typedef {{name: string, pid: number, port: number, url: string, http: string}} Gateway
 */
export const control = {
  /** A private gateway this test may kill. @returns {Promise<Gateway>} */
  startGateway: () => call("POST", `${env.controlUrl}/gateways`),
  /** Once the gateway's process has ended, a new one on its port. @returns {Promise<Gateway>} */
  restartGateway: (/** @type {Gateway} */ gateway) =>
    call("POST", `${env.controlUrl}/gateways/${gateway.name}/restart`),
  /** Cut the gateway's bus connection, the room's history trimmed past every position. */
  outage: (/** @type {string} */ gatewayId, /** @type {string} */ room) =>
    call("POST", `${env.controlUrl}/outages/${gatewayId}/${room}`),
  /** Entries in a service's request stream. @returns {Promise<number>} */
  streamLength: async (/** @type {string} */ service) =>
    (await call("GET", `${env.controlUrl}/streams/${service}`)).length,
};

/** An auction on the bids service (admin API), open for `seconds`. */
export function createAuction(/** @type {string} */ id, seconds = 600) {
  return call(
    "POST",
    `${env.bidsHttp}/auctions`,
    { id, title: `test ${id}`, starting_price: 100, increment: 10, duration_s: seconds },
    { Authorization: `Bearer ${env.bidsAdminToken}` },
  );
}

/**
 * Pause `pid` (SIGSTOP) while `body` runs, then resume it, even when `body` fails.
 * @template T
 * @param {number} pid
 * @param {() => Promise<T>} body
 * @returns {Promise<T>}
 */
export async function paused(pid, body) {
  process.kill(pid, "SIGSTOP");
  try {
    return await body();
  } finally {
    process.kill(pid, "SIGCONT");
  }
}
