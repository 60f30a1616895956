// Reconnecting after the gateway process dies or restarts, and recovering what was missed.
import assert from "node:assert/strict";
import { test } from "node:test";

import { control, createAuction, open, unique, waitFor } from "./support.js";

/** The texts of a room's message events in a client's log. */
function texts(/** @type {any[]} */ events, /** @type {string} */ room) {
  return events.filter((e) => e.channel === `chat:${room}` && e.event === "message").map((e) => e.data.text);
}

test("after the gateway is killed and replaced, a joined room delivers the missed messages once, in order, before live ones", async () => {
  const gateway = await control.startGateway();
  const room = unique("room");
  const { client: alice, log } = open(unique("alice"), { url: gateway.url });
  const { client: bob } = open(unique("bob"));
  await alice.request("chat.join", { room });
  await bob.request("chat.join", { room });
  /** @type {any[]} */
  const recoveries = [];
  alice.on("recovered", (recovery) => recoveries.push(recovery));
  await bob.request("chat.send", { room, text: "before" });
  await waitFor(() => texts(log.events, room).length === 1);

  process.kill(gateway.pid, "SIGKILL");
  await waitFor(() => alice.state === "reconnecting");
  for (let i = 1; i <= 5; i++) await bob.request("chat.send", { room, text: `missed ${i}` });
  await control.restartGateway(gateway);
  await waitFor(() => alice.state === "open", { timeout: 10_000 });
  await bob.request("chat.send", { room, text: "after" });

  await waitFor(() => texts(log.events, room).includes("after"));
  assert.deepEqual(texts(log.events, room), ["before", "missed 1", "missed 2", "missed 3", "missed 4", "missed 5", "after"]);
  assert.deepEqual(recoveries.map((r) => [r.channel, r.ok]), [[`chat:${room}`, true]]);
  assert.ok(log.closes.includes(1006), `closes: ${log.closes}`);
});

test("after a gateway restart (1012) a subscription resubscribes with since and gets the missed events once, in order", async () => {
  const gateway = await control.startGateway();
  const auction = unique("a");
  await createAuction(auction);
  const { client: watcher, log } = open(unique("watcher"), { url: gateway.url });
  const { client: bidder } = open(unique("bidder"));
  const subscription = watcher.subscribe(`auction:${auction}`);
  /** @type {boolean[]} */
  const recovered = [];
  subscription.on("recovered", (ok) => recovered.push(ok));
  /** @type {number[]} */
  const amounts = [];
  subscription.on("event", (e) => e.event === "bid.placed" && amounts.push(e.data.amount));
  await subscription.ready;
  await bidder.request("bids.place", { auction, amount: 100 });
  await waitFor(() => amounts.length === 1);

  process.kill(gateway.pid, "SIGTERM");
  await waitFor(() => log.closes.includes(1012), { what: "a 1012 close" });
  await bidder.request("bids.place", { auction, amount: 110 });
  await bidder.request("bids.place", { auction, amount: 120 });
  await control.restartGateway(gateway);
  await waitFor(() => watcher.state === "open", { timeout: 10_000 });
  await bidder.request("bids.place", { auction, amount: 130 });

  await waitFor(() => amounts.includes(130));
  assert.deepEqual(amounts, [100, 110, 120, 130]);
  assert.deepEqual(recovered, [true]);
  assert.deepEqual(log.states.filter((s, i, all) => s !== all[i - 1]), ["open", "reconnecting", "open"]);
});

test("a request made while reconnecting waits for the connection and then succeeds", async () => {
  const gateway = await control.startGateway();
  const { client } = open(unique("u"), { url: gateway.url });
  await client.ready;
  process.kill(gateway.pid, "SIGKILL");
  await waitFor(() => client.state === "reconnecting");
  const reply = client.request("chat.join", { room: unique("room") });
  await control.restartGateway(gateway);
  assert.equal((await reply).created, true);
});

test("a request without an idempotency key that was in flight when the connection dropped rejects with connection_lost", async () => {
  const gateway = await control.startGateway();
  const { client } = open(unique("u"), { url: gateway.url });
  await client.ready;
  const { paused, env } = await import("./support.js");
  const error = await paused(env.chatPid, async () => {
    const reply = client.request("chat.history", { room: "any" }).catch((e) => e);
    process.kill(gateway.pid, "SIGKILL");
    return reply;
  });
  assert.equal(error.code, "connection_lost");
});

test("a channel without history reports recovered false after a reconnect, and its subscription goes on", async () => {
  const gateway = await control.startGateway();
  const { client } = open(unique("u"), { url: gateway.url });
  const subscription = client.subscribe(`presence:${unique("lobby")}`);
  /** @type {boolean[]} */
  const recovered = [];
  subscription.on("recovered", (ok) => recovered.push(ok));
  await subscription.ready;
  process.kill(gateway.pid, "SIGKILL");
  await control.restartGateway(gateway);
  await waitFor(() => recovered.length === 1, { timeout: 10_000 });
  assert.deepEqual(recovered, [false]);
  assert.equal(subscription.active, true);
});

test("a bus outage of the gateway whose replay cannot be exact is reported as recovered: false, and events go on", async () => {
  const room = unique("room");
  const { client: alice, log } = open(unique("alice"));
  const { client: bob } = open(unique("bob"));
  const welcome = await alice.ready;
  await alice.request("chat.join", { room });
  await bob.request("chat.join", { room });
  await bob.request("chat.send", { room, text: "before" });
  await waitFor(() => texts(log.events, room).length === 1);
  /** @type {any[]} */
  const recoveries = [];
  alice.on("recovered", (recovery) => recoveries.push(recovery));

  const { killed } = await control.outage(welcome.gateway, room);
  assert.equal(killed, 1);
  await waitFor(() => recoveries.length === 1, { what: "the recovery notice" });
  assert.deepEqual([recoveries[0].channel, recoveries[0].ok], [`chat:${room}`, false]);
  await bob.request("chat.send", { room, text: "after" });
  await waitFor(() => texts(log.events, room).includes("after"));
  assert.equal(alice.state, "open");
});

test("after a reconnect a room's presence watch follows the rejoin, and is not refused", async () => {
  const gateway = await control.startGateway();
  const room = unique("room");
  const { client, log } = open(unique("alice"), { url: gateway.url });
  // The watch subscribed first: without the ordering, it would resubscribe before the rejoin.
  await client.request("chat.join", { room });
  const watch = client.subscribe(`presence:chat:${room}`);
  await watch.ready;
  /** @type {any[]} */
  const ended = [];
  watch.on("end", (error) => ended.push(error?.code));
  /** @type {string[]} */
  const recovered = [];
  client.on("recovered", ({ channel }) => recovered.push(channel));

  process.kill(gateway.pid, "SIGKILL");
  await waitFor(() => client.state === "reconnecting");
  await control.restartGateway(gateway);
  await waitFor(() => recovered.includes(`presence:chat:${room}`), { timeout: 10_000, what: "the watch resubscribed" });
  assert.deepEqual(ended, []);
  assert.equal(watch.active, true);
  assert.deepEqual(recovered.slice(0, 2), [`chat:${room}`, `presence:chat:${room}`]);
  assert.ok(log.closes.includes(1006));
});
