// Requests, errors, subscriptions and events on a healthy gateway.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RealtimeError } from "../realtime.js";
import { createAuction, env, open, paused, unique, waitFor } from "./support.js";

test("ready resolves with the welcome and the state goes connecting -> open", async () => {
  const { client, log } = open(unique("u"));
  assert.equal(client.state, "connecting");
  const welcome = await client.ready;
  assert.equal(welcome.user, client.user);
  assert.equal(client.connectionId, welcome.connection);
  assert.deepEqual(log.states, ["open"]);
});

test("a request resolves with the reply's data", async () => {
  const { client } = open(unique("u"));
  const room = unique("room");
  const joined = await client.request("chat.join", { room });
  assert.equal(joined.channel, `chat:${room}`);
  assert.equal(joined.created, true);
});

test("a refused request rejects with an Error carrying the code and the error's other fields", async () => {
  const { client } = open(unique("u"));
  const room = unique("nowhere");
  const error = await client.request("chat.send", { room, text: "hi" }).catch((e) => e);
  assert.ok(error instanceof RealtimeError && error instanceof Error);
  assert.equal(error.code, "room_not_found");
  assert.equal(error.data.room, room);
  assert.equal(typeof error.request.data.client_id, "string", "the generated key is in .request");
  const unknown = await client.request("search.find", {}).catch((e) => e);
  assert.equal(unknown.code, "unknown_type");
});

test("a request with no reply in time rejects with code timeout", async () => {
  const { client } = open(unique("u"));
  await client.ready;
  const error = await paused(env.chatPid, () =>
    client.request("chat.history", { room: "any" }, { timeout: 300 }).catch((e) => e),
  );
  assert.equal(error.code, "timeout");
});

test("requests and subscriptions made before ready are sent once the client is open", async () => {
  const auction = unique("a");
  await createAuction(auction);
  const { client } = open(unique("u"));
  const subscription = client.subscribe(`auction:${auction}`);
  const got = client.request("bids.get", { auction });
  assert.equal(client.state, "connecting");
  assert.equal((await got).id, auction);
  assert.equal((await subscription.ready).channel, `auction:${auction}`);
});

test("a subscription delivers its channel's events, in order, to its handler and to client 'event'", async () => {
  const auction = unique("a");
  await createAuction(auction);
  const { client: watcher, log } = open(unique("watcher"));
  const { client: bidder } = open(unique("bidder"));
  /** @type {any[]} */
  const seen = [];
  const subscription = watcher.subscribe(`auction:${auction}`, (event) => seen.push(event));
  await subscription.ready;
  await bidder.request("bids.place", { auction, amount: 100 });
  await bidder.request("bids.place", { auction, amount: 110 });
  await waitFor(() => seen.filter((e) => e.event === "bid.placed").length === 2);
  const bids = seen.filter((e) => e.event === "bid.placed").map((e) => e.data.amount);
  assert.deepEqual(bids, [100, 110]);
  assert.deepEqual(log.events.filter((e) => e.channel === `auction:${auction}`), seen);
  assert.equal(subscription.position, seen.at(-1).position);
});

test("a refused subscription rejects ready with the code and ends", async () => {
  const { client } = open(unique("u"));
  const subscription = client.subscribe(`chat:${unique("nowhere")}`);
  const error = await subscription.ready.catch((e) => e);
  assert.equal(error.code, "room_not_found");
  assert.equal(subscription.active, false);
});

test("the events of a room a chat.join subscribed reach client 'event' and a subscription of its channel", async () => {
  const room = unique("room");
  const { client: alice, log } = open(unique("alice"));
  const { client: bob } = open(unique("bob"));
  await alice.request("chat.join", { room });
  await bob.request("chat.join", { room });
  const handle = alice.subscribe(`chat:${room}`);
  assert.equal((await handle.ready).room, room, "shares the join's subscription");
  /** @type {string[]} */
  const texts = [];
  handle.on("event", (event) => event.event === "message" && texts.push(event.data.text));
  await bob.request("chat.send", { room, text: "hello" });
  await waitFor(() => texts.length === 1);
  assert.ok(log.events.some((e) => e.channel === `chat:${room}` && e.data.text === "hello"));
});

test("chat.leave ends the room's subscriptions and the gateway's 'unsubscribed' ends its presence watch", async () => {
  const room = unique("room");
  const { client } = open(unique("u"));
  await client.request("chat.join", { room });
  const roomHandle = client.subscribe(`chat:${room}`);
  const watch = client.subscribe(`presence:chat:${room}`);
  await watch.ready;
  /** @type {any[]} */
  const ended = [];
  roomHandle.on("end", (error) => ended.push(["room", error?.code]));
  watch.on("end", (error) => ended.push(["watch", error?.code]));
  await client.request("chat.leave", { room });
  await waitFor(() => ended.length === 2);
  assert.deepEqual(ended.sort(), [["room", "left"], ["watch", "unsubscribed"]]);
  assert.equal(watch.active, false);
});

test("unsubscribe() stops the events and a new subscribe of the channel works again", async () => {
  const auction = unique("a");
  await createAuction(auction);
  const { client } = open(unique("u"));
  const { client: bidder } = open(unique("bidder"));
  const first = client.subscribe(`auction:${auction}`);
  await first.ready;
  first.unsubscribe();
  await bidder.request("bids.place", { auction, amount: 100 });
  const second = client.subscribe(`auction:${auction}`);
  await second.ready;
  /** @type {number[]} */
  const amounts = [];
  second.on("event", (e) => e.event === "bid.placed" && amounts.push(e.data.amount));
  await bidder.request("bids.place", { auction, amount: 110 });
  await waitFor(() => amounts.length === 1);
  assert.deepEqual(amounts, [110]);
});

test("close() is final: state closed, pending and later requests reject with code closed", async () => {
  const { client, log } = open(unique("u"));
  await client.ready;
  const pending = paused(env.chatPid, async () => {
    const reply = client.request("chat.history", { room: "any" }).catch((e) => e);
    client.close();
    return reply;
  });
  assert.equal((await pending).code, "closed");
  assert.equal(client.state, "closed");
  assert.equal(log.states.at(-1), "closed");
  assert.equal((await client.request("chat.join", { room: "x" }).catch((e) => e)).code, "closed");
});

test("the gateway serves the library and its types at /client/", async () => {
  const { readFile } = await import("node:fs/promises");
  const served = await fetch(`${env.gatewayHttp}/client/realtime.js`);
  assert.equal(served.status, 200);
  assert.match(served.headers.get("content-type") ?? "", /^application\/javascript/);
  assert.equal(await served.text(), await readFile(new URL("../realtime.js", import.meta.url), "utf8"));
  const types = await fetch(`${env.gatewayHttp}/client/realtime.d.ts`);
  assert.equal(types.status, 200);
  assert.equal((await fetch(`${env.gatewayHttp}/client/other.js`)).status, 404);
});
