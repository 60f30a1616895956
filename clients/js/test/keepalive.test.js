// Keep-alive: pings keep an idle connection open; a gateway that stops answering is noticed
// and replaced.
import assert from "node:assert/strict";
import { test } from "node:test";

import { control, open, paused, unique, waitFor } from "./support.js";

/** The gateway's count of `ping` messages received. */
async function pings(/** @type {string} */ http) {
  const text = await (await fetch(`${http}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith('rt_gateway_messages_in_total{kind="ping"}'));
  return line ? Number(line.split(" ")[1]) : 0;
}

test("an idle connection pings, stays open, and a frozen gateway is detected and reconnected after it resumes", async () => {
  const gateway = await control.startGateway();
  const { client, log } = open(unique("u"), {
    url: gateway.url,
    pingInterval: 200,
    pingTimeout: 300,
    connectTimeout: 500,
  });
  await client.ready;
  await waitFor(async () => (await pings(gateway.http)) >= 3, { what: "three pings while idle" });
  assert.deepEqual(log.closes, [], "pings answered: no drop while idle");

  await paused(gateway.pid, async () => {
    await waitFor(() => client.state === "reconnecting", { timeout: 3000, what: "the dead connection noticed" });
  });
  assert.equal(log.closes[0], 4000);
  await waitFor(() => client.state === "open", { timeout: 10_000 });
  assert.equal((await client.request("chat.join", { room: unique("room") })).created, true);
});
