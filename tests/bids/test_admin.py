"""The admin HTTP API (a bearer token, deny by default) and the seed of demo auctions."""

from __future__ import annotations

import ast
import inspect
import json
import time
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from bids_service import admin as admin_module
from bids_service.seed import DEMO_AUCTIONS
from common.settings import Secret
from tests.bids.support import ADMIN_TOKEN, KEYS, BidClient, Launcher, admin, state
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.waiting import wait_until


class Stack:
    def __init__(
        self, gateway: ManagedProcess, admin: ManagedProcess, locked: ManagedProcess
    ) -> None:
        self.gateway = gateway
        self.admin = admin
        self.locked = locked


@pytest.fixture(scope="module")
def stack(launcher: Launcher) -> Stack:
    """A gateway, and two instances seeding demo auctions at once, one with no admin token."""
    gateway = launcher.gateway(wait=False)
    seeding = {"RT_BIDS_SEED_DEMO": "1"}
    # JSON logs, so that the audit test can read its lines back.
    with_token = launcher.bids({**seeding, "RT_LOG_FORMAT": "json"}, wait=False)
    without_token = launcher.bids({**seeding, "RT_BIDS_ADMIN_TOKEN": ""}, wait=False)
    wait_all_ready([gateway, with_token, without_token])
    return Stack(gateway, with_token, without_token)


_VALID = {"title": "Chair", "starting_price": 1000, "increment": 100, "duration_s": 60}


async def test_the_admin_api_needs_the_token(stack: Stack) -> None:
    """Without the bearer token, or with a wrong one, every admin request gets 401."""
    for token in (None, "wrong-token", ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x"):
        for method, path, body in (("POST", "/auctions", _VALID), ("GET", "/auctions/x", None)):
            status, headers, answer = await admin(stack.admin, method, path, body, token=token)
            assert status == 401, (token, answer)
            assert headers.get("www-authenticate") == "Bearer"
            assert answer["error"]["code"] == "unauthenticated"


async def test_the_admin_api_is_off_without_a_configured_token(stack: Stack) -> None:
    """An instance with no admin token configured refuses every admin request (403)."""
    for method, path, body in (("POST", "/auctions", _VALID), ("GET", "/auctions/x", None)):
        status, _, answer = await admin(stack.locked, method, path, body)
        assert status == 403
        assert "RT_BIDS_ADMIN_TOKEN" in answer["error"]["message"]


async def test_create_then_get(stack: Stack, name: str) -> None:
    """POST /auctions creates (201, Location) and GET /auctions/<id> shows the same state."""
    before = int(time.time() * 1000)
    status, headers, created = await admin(stack.admin, "POST", "/auctions", {**_VALID, "id": name})
    assert status == 201, created
    assert headers.get("location") == f"/auctions/{name}"
    assert created["id"] == name
    assert created["status"] == "open"
    assert (created["current"], created["minimum"], created["increment"]) == (None, 1000, 100)
    assert before + 59_000 <= created["ends_at"] <= int(time.time() * 1000) + 61_000
    assert (created["extend_window"], created["extend_by"]) == (30, 30)
    status, _, fetched = await admin(stack.admin, "GET", f"/auctions/{name}")
    assert status == 200
    assert fetched == created
    status, _, again = await admin(stack.admin, "POST", "/auctions", {**_VALID, "id": name})
    assert status == 409
    assert again["error"]["field"] == "id"
    status, _, generated = await admin(stack.admin, "POST", "/auctions", _VALID)
    assert status == 201
    assert generated["id"].startswith("a-")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**_VALID, "title": ""}, "title"),
        ({**_VALID, "starting_price": "10"}, "starting_price"),
        ({**_VALID, "increment": 0}, "increment"),
        ({**_VALID, "ends_at": 2_000_000_000_000}, "ends_at"),
        ({**_VALID, "duration_s": -1}, "duration_s"),
        ({**_VALID, "extend_by": 10**9}, "extend_by"),
        ({**_VALID, "id": "no/slash"}, "id"),
        ({**_VALID, "reserve": 5}, "reserve"),
        ({**_VALID, "title": 7}, "title"),
        ({**_VALID, "starting_price": 10.5}, "starting_price"),
        ({**_VALID, "starting_price": True}, "starting_price"),
        ({**_VALID, "extend_window": "30"}, "extend_window"),
        ({key: value for key, value in _VALID.items() if key != "duration_s"} | {"ends_at": 1000},
         "ends_at"),
    ],
)  # fmt: skip
async def test_invalid_auctions_are_refused(stack: Stack, body: dict[str, Any], field: str) -> None:
    """An invalid field (an end in the past too) gets 400 naming the field."""
    status, _, answer = await admin(stack.admin, "POST", "/auctions", body)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_request"
    assert answer["error"]["field"] == field


async def test_unreadable_bodies_and_unknown_auctions(stack: Stack) -> None:
    """Non-JSON bodies get 400, oversized ones 413, unknown auctions 404."""
    for raw in (b"not json", b"[1, 2]", b""):
        status, _, answer = await admin(stack.admin, "POST", "/auctions", raw=raw)
        assert status == 400, raw
        assert "JSON object" in answer["error"]["message"]
    status, _, _ = await admin(stack.admin, "POST", "/auctions", raw=b" " * 20_000)
    assert status == 413
    padded = json.dumps({**_VALID, "title": "x" * 17_000}).encode()
    status, _, answer = await admin(stack.admin, "POST", "/auctions", raw=padded)
    assert status == 413, answer
    assert "16384 bytes" in answer["error"]["message"]
    for auction in ("missing", "bad%20id"):
        status, _, answer = await admin(stack.admin, "GET", f"/auctions/{auction}")
        assert status == 404
        assert answer["error"]["code"] == "auction_not_found"


async def test_demo_auctions_are_seeded_once_and_never_reset(
    stack: Stack, launcher: Launcher, bus: Redis, name: str
) -> None:
    """Instances seeding at once create each demo auction once; a later seed keeps their bids."""
    ids = [str(body["id"]) for body in DEMO_AUCTIONS]
    for auction in ids:
        seeded = await state(bus, auction)
        assert (seeded["status"], seeded["seq"]) == ("open", "0"), seeded
    open_ids = cast("list[bytes]", await bus.zrange(KEYS[0].open, 0, -1))
    assert set(ids) <= {member.decode() for member in open_ids}
    client = await BidClient.open(stack.gateway, f"{name}-ann")
    listed = await client.request({"type": "bids.list"})
    assert set(ids) <= {row["id"] for row in listed["data"]["auctions"]}
    minimum = int(DEMO_AUCTIONS[0]["starting_price"])
    assert (await client.place(ids[0], minimum, "demo-bid"))["ok"]
    launcher.bids({"RT_BIDS_SEED_DEMO": "1"})
    after = await state(bus, ids[0])
    assert (after["seq"], after["current"], after["bidder"]) == ("1", str(minimum), client.user)
    await client.close()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"title": "a", "title": "b"}', "'title' is given twice"),
        (b'{"title": "a", "starting_price": NaN}', "NaN is not a number JSON allows"),
        (b'{"title": "a", "increment": Infinity}', "Infinity is not a number JSON allows"),
        (b'{"title": "\xff"}', "malformed JSON"),
    ],
)
async def test_bodies_that_are_not_strict_json_are_refused(
    stack: Stack, raw: bytes, says: str
) -> None:
    """Duplicate keys, NaN or Infinity, and invalid UTF-8 get 400 saying what is wrong."""
    status, _, answer = await admin(stack.admin, "POST", "/auctions", raw=raw)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_request"
    assert says in answer["error"]["message"]


def test_the_token_is_compared_in_constant_time() -> None:
    """The admin token check goes through hmac.compare_digest, and never through ==."""
    tree = ast.parse(inspect.getsource(admin_module))
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert "hmac.compare_digest" in calls
    checker = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "token_matches"
    )
    assert not [node for node in ast.walk(checker) if isinstance(node, ast.Compare)]
    refusal = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "_refusal"
    )
    names = {ast.unparse(node.func) for node in ast.walk(refusal) if isinstance(node, ast.Call)}
    assert "token_matches" in names
    assert admin_module.token_matches(ADMIN_TOKEN, Secret(ADMIN_TOKEN))
    assert not admin_module.token_matches(ADMIN_TOKEN[:-1], Secret(ADMIN_TOKEN))


def _audit_lines(instance: ManagedProcess) -> list[dict[str, Any]]:
    lines = instance.log_path.read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [record for record in records if record.get("msg") == "admin audit"]


async def test_every_change_leaves_an_audit_line_without_the_token(stack: Stack, name: str) -> None:
    """Each POST /auctions, refused or not, logs who asked and what came of it, never a token."""
    wrong = "not-the-admin-token-" + name
    actor = {"X-Admin-Actor": f"ops-{name}"}
    body = {**_VALID, "id": name}
    bad = {**_VALID, "id": name + "-bad", "reserve": 1}
    for payload, token, status in (
        (body, ADMIN_TOKEN, 201),
        (body, ADMIN_TOKEN, 409),
        (body, wrong, 401),
        (bad, ADMIN_TOKEN, 400),
    ):
        answer = await admin(stack.admin, "POST", "/auctions", payload, token=token, headers=actor)
        assert answer[0] == status, answer

    def mine() -> list[dict[str, Any]]:
        return [line for line in _audit_lines(stack.admin) if line.get("actor") == f"ops-{name}"]

    async def all_logged() -> bool:
        return len(mine()) >= 4

    await wait_until(all_logged, what="four audit lines")
    created, conflict, unauthorized, invalid = mine()
    assert created["action"] == "auction.create"
    assert (created["status"], created["auction"]) == (201, name)
    assert created["client"].startswith("127.0.0.1:")
    assert (conflict["status"], conflict["error"]) == (409, "conflict")
    assert (unauthorized["status"], unauthorized["error"]) == (401, "unauthenticated")
    assert (invalid["status"], invalid["error"]) == (400, "bad_request")
    log = stack.admin.log_path.read_text(errors="replace")
    assert ADMIN_TOKEN not in log
    assert wrong not in log
