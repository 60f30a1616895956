// A chat.send or bids.place whose reply was lost to a reconnect is sent again with the same
// key, and has exactly one effect.
import assert from "node:assert/strict";
import { test } from "node:test";

import { control, createAuction, env, open, paused, unique, waitFor } from "./support.js";

/**
 * Send `request` while `servicePid` is paused, wait until it reached the service's stream,
 * kill the gateway and start a new one on its port, wait until the client has sent it again,
 * then let the service run: it sees the request twice, with one key.
 * @param {{gateway: import("./support.js").Gateway, service: string, servicePid: number,
 *   client: import("../realtime.js").Client, send: () => Promise<any>}} setup
 */
async function sendAcrossReconnect({ gateway, service, servicePid, client, send }) {
  const before = await control.streamLength(service);
  // Wrapped: paused() awaits what its body returns, and the reply needs the service running.
  const { sent } = await paused(servicePid, async () => {
    const sent = send();
    sent.catch(() => {}); // awaited below, once the service runs again
    await waitFor(async () => (await control.streamLength(service)) === before + 1, { what: "the first send on the bus" });
    process.kill(gateway.pid, "SIGKILL");
    await control.restartGateway(gateway);
    await waitFor(() => client.state === "open", { timeout: 10_000 });
    await waitFor(async () => (await control.streamLength(service)) >= before + 2, { what: "the retry on the bus" });
    return { sent };
  });
  return sent;
}

test("a chat.send retried after a forced reconnect posts exactly once and resolves with that message", async () => {
  const gateway = await control.startGateway();
  const room = unique("room");
  const { client, log } = open(unique("alice"), { url: gateway.url, requestTimeout: 20_000 });
  await client.request("chat.join", { room });
  const reply = await sendAcrossReconnect({
    gateway,
    service: "chat",
    servicePid: env.chatPid,
    client,
    send: () => client.request("chat.send", { room, text: "exactly once" }),
  });
  const history = await client.request("chat.history", { room });
  const posted = history.messages.filter((/** @type {any} */ m) => m.text === "exactly once");
  assert.equal(posted.length, 1);
  assert.equal(posted[0].id, reply.id);
  await waitFor(() => log.events.some((e) => e.data?.id === reply.id));
  assert.equal(log.events.filter((e) => e.data?.id === reply.id).length, 1, "its event delivered once");
});

test("a bids.place retried after a forced reconnect is judged once and resolves with that verdict", async () => {
  const gateway = await control.startGateway();
  const auction = unique("a");
  await createAuction(auction);
  const { client } = open(unique("bidder"), { url: gateway.url, requestTimeout: 20_000 });
  await client.ready;
  const verdict = await sendAcrossReconnect({
    gateway,
    service: "bids",
    servicePid: env.bidsPid,
    client,
    send: () => client.request("bids.place", { auction, amount: 100 }),
  });
  assert.equal(verdict.accepted, true);
  const state = await client.request("bids.get", { auction });
  assert.equal(state.bids, 1);
  assert.equal(state.current, 100);
  assert.equal(state.seq, verdict.seq);
});

test("the caller's own key is sent as is and its object is not modified", async () => {
  const { client } = open(unique("bidder"));
  const auction = unique("a");
  await createAuction(auction);
  const fields = { auction, amount: 100, key: "mine-1" };
  const first = await client.request("bids.place", fields);
  const again = await client.request("bids.place", { auction, amount: 100, key: "mine-1" });
  assert.deepEqual(again, first);
  assert.deepEqual(fields, { auction, amount: 100, key: "mine-1" });
  const generated = { auction, amount: 110 };
  await client.request("bids.place", generated);
  assert.deepEqual(generated, { auction, amount: 110 });
});

test("a bids.place answered service_unavailable is sent again with its key and resolves with the one verdict", async () => {
  const auction = unique("a");
  await createAuction(auction);
  const { client } = open(unique("bidder"), { requestTimeout: 15_000 });
  await client.ready;
  const before = await control.streamLength("bids");
  const { sent } = await paused(env.bidsPid, async () => {
    const sent = client.request("bids.place", { auction, amount: 100 });
    sent.catch(() => {});
    // The gateway answers service_unavailable after its RT_REQUEST_TIMEOUT (2 s); the resend
    // is the second entry.
    await waitFor(async () => (await control.streamLength("bids")) >= before + 2, { timeout: 8000, what: "the resend on the bus" });
    return { sent };
  });
  const verdict = await sent;
  assert.equal(verdict.accepted, true);
  assert.equal((await client.request("bids.get", { auction })).bids, 1);
});
