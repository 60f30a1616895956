// Tokens: a refresh before exp on the open connection, a new token after a 4401, and giving up
// on a token that keeps being refused.
import assert from "node:assert/strict";
import { test } from "node:test";

import { open, sign, unique, waitFor } from "./support.js";

test("without refresh, the gateway's 4401 at expiry leads to a new token and a new connection", async () => {
  const user = unique("u");
  let issued = 0;
  const { client, log } = open(user, { token: () => (issued++, sign(user, 2)), refreshBefore: false });
  await client.ready;
  const first = client.connectionId;
  await waitFor(() => log.closes.includes(4401), { timeout: 6000, what: "the 4401 of expiry" });
  await waitFor(() => client.state === "open" && client.connectionId !== first);
  assert.ok(issued >= 2, `token() called ${issued} times`);
  assert.equal((await client.request("chat.join", { room: unique("room") })).created, true);
});

test("with refresh, the client re-authenticates before exp and keeps its connection", async () => {
  const user = unique("u");
  let issued = 0;
  const { client, log } = open(user, { token: () => (issued++, sign(user, 3)), refreshBefore: 1500 });
  await client.ready;
  const first = client.connectionId;
  const firstExpiry = Date.now() + 3000;
  await waitFor(() => issued >= 3 && Date.now() > firstExpiry, { timeout: 8000, what: "two refreshes past the first exp" });
  assert.deepEqual(log.closes, []);
  assert.equal(client.connectionId, first);
  assert.equal(client.state, "open");
  assert.equal((await client.request("chat.join", { room: unique("room") })).created, true);
});

test("a fixed token the gateway refuses closes the client: ready rejects with unauthenticated", async () => {
  const { client, log } = open(unique("u"), { token: "not-a-jwt" });
  const error = await client.ready.catch((e) => e);
  assert.equal(error.code, "unauthenticated");
  assert.equal(client.state, "closed");
  assert.equal(log.errors[0].code, "unauthenticated", "the refusal is reported");
});

test("a token function that keeps giving refused tokens is given up after maxAuthFailures", async () => {
  let issued = 0;
  const { client } = open(unique("u"), { token: () => (issued++, "bad.token.here"), maxAuthFailures: 3 });
  const error = await client.ready.catch((e) => e);
  assert.equal(error.code, "unauthenticated");
  assert.equal(issued, 3);
});

test("the gateway's token_expiring notice reaches the application as an expiring event", async () => {
  const user = unique("u");
  // The test gateway gives the notice 60 s before exp: a 30 s token gets it at once.
  const token = sign(user, 30);
  const { client } = open(user, { token: () => token, refreshBefore: false });
  /** @type {number[]} */
  const notices = [];
  client.on("expiring", ({ expiresAt }) => notices.push(expiresAt));
  await client.ready;
  await waitFor(() => notices.length > 0, { what: "the expiring event" });
  const exp = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).exp;
  assert.deepEqual(notices, [exp]);
});
