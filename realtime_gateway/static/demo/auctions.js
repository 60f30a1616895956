// The auctions view: every open auction with its price, minimum and a live countdown, a bid
// box, and the bids of everyone as they happen. Each card follows its auction's channel;
// its state comes from bids.get; events that arrive before it are held, and events at or
// before that state's seq are skipped (the state already contains them).
import { clock, describeError, el, money, say, timeLeft, toCents } from "./ui.js";

export function startAuctions(client, { user, note }) {
  const $ = (id) => document.getElementById(id);
  const cards = new Map(); // auction id -> card

  function render(card) {
    const { state, nodes } = card;
    if (!state) return;
    const closed = state.status === "closed";
    nodes.price.textContent =
      state.current === null ? `Starting price ${money(state.starting_price)}, no bid yet`
        : `Current bid ${money(state.current)} by ${state.bidder}${state.bidder === user ? " (you)" : ""}`;
    nodes.minimum.textContent = closed ? "" : `Minimum bid ${money(state.minimum)}`;
    // No `min` on the input: the browser would refuse a lower bid by itself, and the
    // service's own answer (bid_too_low, with the minimum) is the one to show.
    nodes.amount.placeholder = money(state.minimum);
    nodes.amount.disabled = closed;
    nodes.place.disabled = closed;
    card.root.dataset.status = state.status;
    if (closed) {
      nodes.ends.textContent = `Ended at ${clock(state.ends_at)}`;
      nodes.winner.textContent = state.winner === null ? "Closed: nobody bid."
        : `Closed: ${state.winner}${state.winner === user ? " (you)" : ""} won at ${money(state.current)}`;
    } else {
      nodes.ends.textContent = `Ends in ${timeLeft(state.ends_at)}`;
    }
  }

  function logLine(card, text) {
    card.nodes.log.prepend(el("li", { text }));
  }

  function onEvent(card, event) {
    const { state } = card;
    const seq = Number(event.position);
    if (Number.isFinite(seq) && seq <= state.seq) return; // already in the state we hold
    state.seq = seq;
    if (event.event === "bid.placed") {
      const { amount, bidder, ends_at, placed_at } = event.data;
      state.current = amount;
      state.bidder = bidder;
      state.minimum = amount + state.increment;
      state.ends_at = ends_at;
      state.bids += 1;
      logLine(card, `${clock(placed_at)} ${bidder} bid ${money(amount)}`);
    } else if (event.event === "auction.extended") {
      state.ends_at = event.data.ends_at;
      logLine(card, `Late bid: extended to ${clock(event.data.ends_at)}`);
    } else if (event.event === "auction.closed") {
      state.status = "closed";
      state.winner = event.data.winner;
      logLine(card, event.data.winner === null ? "Closed without a bid" : `Closed: ${event.data.winner} won`);
    }
    render(card);
  }

  async function reload(card) {
    card.held = card.held || [];
    let state = null;
    try {
      state = await client.request("bids.get", { auction: card.id });
    } finally {
      const held = card.held;
      card.held = null;
      if (state) card.state = state;
      if (card.state) for (const event of held) onEvent(card, event);
    }
    render(card);
  }

  async function place(card, event) {
    event.preventDefault();
    const { amount, error } = card.nodes;
    const cents = toCents(amount.value);
    if (cents === null) {
      say(error, "Type an amount, such as 12.50", "error");
      return;
    }
    say(error, "");
    try {
      // The library adds the idempotency key, and sends the same one again if it retries.
      await client.request("bids.place", { auction: card.id, amount: cents });
      amount.value = "";
    } catch (failure) {
      const minimum = failure.code === "bid_too_low" && failure.data?.minimum;
      say(error, describeError(failure), "error");
      if (minimum) card.nodes.minimum.textContent = `Minimum bid ${money(minimum)}`;
    }
  }

  function makeCard(summary) {
    const id = summary.id;
    const amountId = `bid-${id}`;
    const nodes = {
      price: el("p", { class: "price" }),
      minimum: el("p", { class: "minimum" }),
      ends: el("p", { class: "ends" }),
      winner: el("p", { class: "winner", role: "status" }),
      amount: el("input", { id: amountId, name: "amount", type: "number", step: "0.01", inputmode: "decimal", required: true }),
      place: el("button", { type: "submit", text: "Place bid" }),
      error: el("p", { class: "error", role: "alert", hidden: true }),
      log: el("ul", { class: "bids", "aria-label": `Bids on ${summary.title}` }), // newest first
    };
    const card = { id, state: null, held: [], nodes, subscription: null, root: null };
    card.root = el("article", { class: "auction", "data-auction": id, "aria-labelledby": `title-${id}` },
      el("h3", { id: `title-${id}`, text: summary.title }),
      nodes.price, nodes.ends, nodes.minimum, nodes.winner,
      el("form", { class: "inline", onsubmit: (event) => place(card, event) },
        el("label", { for: amountId, text: "Your bid" }), nodes.amount, nodes.place),
      nodes.error, nodes.log,
    );
    return card;
  }

  async function follow(summary) {
    const card = makeCard(summary);
    cards.set(card.id, card);
    // Subscribe first, then read the state: no event falls between the two.
    card.subscription = client.subscribe(`auction:${card.id}`, (event) => {
      if (card.held) card.held.push(event);
      else onEvent(card, event);
    });
    card.subscription.on("recovered", (ok) => {
      if (!ok) {
        note(`Missed bids on "${summary.title}" could not all be replayed: its state was reloaded.`, "warning");
        reload(card).catch(() => {});
      }
    });
    await reload(card);
    return card;
  }

  async function refresh() {
    try {
      const { auctions } = await client.request("bids.list", {});
      for (const summary of auctions) {
        if (!cards.has(summary.id)) await follow(summary);
      }
      const list = $("auction-list");
      list.replaceChildren(...[...cards.values()].map((card) => card.root));
      $("auctions-empty").hidden = cards.size > 0;
    } catch (failure) {
      note(`Could not list the auctions: ${describeError(failure)}`, "error");
    }
  }

  // One timer for every countdown.
  setInterval(() => {
    for (const card of cards.values()) {
      if (card.state && card.state.status === "open") {
        card.nodes.ends.textContent = `Ends in ${timeLeft(card.state.ends_at)}`;
      }
    }
  }, 1000);

  $("refresh-auctions").addEventListener("click", refresh);
  refresh();
  return { refresh };
}
