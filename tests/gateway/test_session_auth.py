"""The session's authentication rules, with no I/O: tokens, deadlines, expiry, revocation."""

from __future__ import annotations

import time

import pytest

from common.envelope import now_ms
from common.errors import CloseCode
from common.revocation import Revocation
from realtime_gateway.session import MAX_AUTH_FAILURES, STOP_TIMER, Close, StartTimer
from tests.gateway.session_support import Driven, code_of, error_of, messages, token


def test_open_starts_the_authentication_deadline() -> None:
    """An accepted connection has RT_AUTH_TIMEOUT seconds to authenticate, then 4401."""
    driven = Driven(auth_timeout=2.5)
    assert driven.open() == [StartTimer(delay=2.5)]
    assert driven.fired() == [Close(CloseCode.UNAUTHENTICATED, "authentication timeout")]


def test_auth_welcomes_and_schedules_the_expiry_notice() -> None:
    """A good token is answered with welcome (ref echoed) and the notice timer before exp."""
    driven = Driven()
    driven.open()
    good = token("alice", ttl=600)
    actions = driven.send({"type": "auth", "ref": 7, "token": good})
    (welcome,) = messages(actions)
    assert welcome == {
        "type": "welcome",
        "ref": 7,
        "connection": "gw-test.1",
        "user": "alice",
        "gateway": "gw-test",
    }
    (timer,) = [action for action in actions if isinstance(action, StartTimer)]
    identity = driven.gate.verify(good)
    assert timer == StartTimer(wall=identity.expires_at - 60.0)
    assert driven.session.user == "alice"
    assert driven.gate.admitted == ["alice"]
    assert driven.gate.counted["auth"] == 1


def test_expiry_notice_then_close() -> None:
    """The notice timer sends token_expiring and waits for exp; then 4401 token expired."""
    driven = Driven()
    driven.authenticate()
    expires_at = driven.gate.verify(token()).expires_at
    actions = driven.fired()
    assert messages(actions)[0]["type"] == "token_expiring"
    assert abs(messages(actions)[0]["expires_at"] - expires_at) <= 5
    (timer,) = [action for action in actions if isinstance(action, StartTimer)]
    assert timer.wall == messages(actions)[0]["expires_at"]
    assert driven.fired() == [Close(CloseCode.UNAUTHENTICATED, "token expired")]


def test_without_notice_the_timer_runs_to_exp() -> None:
    """With RT_TOKEN_EXPIRING_NOTICE=0 nothing is sent before the 4401 at exp."""
    driven = Driven(expiring_notice=0.0)
    actions = driven.authenticate()
    (timer,) = [action for action in actions if isinstance(action, StartTimer)]
    assert timer.wall is not None
    assert timer.wall > time.time() + 3000
    assert driven.fired() == [Close(CloseCode.UNAUTHENTICATED, "token expired")]


def test_a_timer_that_is_no_longer_set_does_nothing() -> None:
    """A late tick (the shell stopped the timer at finish) has no effect."""
    driven = Driven()
    driven.open()
    assert driven.run(driven.session.finish()) == [STOP_TIMER]
    assert driven.fired() == []


def test_three_bad_tokens_close_an_unauthenticated_connection() -> None:
    """The third invalid token closes with 4401; a missing token (bad_request) does not count."""
    driven = Driven()
    driven.open()
    assert code_of(driven.send({"type": "auth", "ref": 0})) == "bad_request"
    for attempt in range(1, MAX_AUTH_FAILURES + 1):
        actions = driven.send({"type": "auth", "ref": attempt, "token": "not-a-jwt"})
        assert messages(actions)[0]["error"]["code"] == "unauthenticated"
        closes = [action for action in actions if isinstance(action, Close)]
        if attempt < MAX_AUTH_FAILURES:
            assert closes == []
        else:
            assert closes == [Close(CloseCode.UNAUTHENTICATED, "too many failed authentications")]
    assert driven.gate.failures == MAX_AUTH_FAILURES


def test_bad_tokens_never_close_an_authenticated_connection() -> None:
    """Once authenticated, invalid tokens are refused and change nothing."""
    driven = Driven()
    driven.authenticate()
    for _ in range(MAX_AUTH_FAILURES + 1):
        actions = driven.send({"type": "auth", "token": "not-a-jwt"})
        assert code_of(actions) == "unauthenticated"
    assert driven.session.user == "alice"


def test_reauthentication_extends_for_the_same_user_only() -> None:
    """Same user: ok with user and expires_at, and a new timer; another user: forbidden."""
    driven = Driven()
    driven.authenticate()
    fresh = token("alice", ttl=7200)
    actions = driven.send({"type": "auth", "ref": "r", "token": fresh})
    (message,) = messages(actions)
    expires_at = driven.gate.verify(fresh).expires_at
    assert message == {
        "type": "reply",
        "ref": "r",
        "ok": True,
        "data": {"user": "alice", "expires_at": expires_at},
    }
    assert [a for a in actions if isinstance(a, StartTimer)] == [StartTimer(wall=expires_at - 60)]
    assert code_of(driven.send({"type": "auth", "token": token("bob")})) == "forbidden"
    assert driven.gate.admitted == ["alice"]


def test_a_revoked_token_is_refused_at_auth() -> None:
    """A token the revocations refuse is unauthenticated, saying it was revoked."""
    driven = Driven()
    driven.open()
    driven.gate.revoked_users.add("alice")
    error = error_of(driven.send({"type": "auth", "token": token()}))
    assert error == {"code": "unauthenticated", "message": "the token has been revoked"}


def test_too_many_failures_from_the_address_refuse_without_checking() -> None:
    """When the edge refuses tries, auth gets rate_limited and an unauthenticated 4429."""
    driven = Driven()
    driven.open()
    driven.gate.may_try = False
    actions = driven.send({"type": "auth", "token": token()})
    assert code_of(actions) == "rate_limited"
    assert actions[-1] == Close(CloseCode.RATE_LIMITED, "too many failed authentications")
    assert driven.session.user is None


def test_an_authenticated_connection_refused_by_the_edge_stays_open() -> None:
    """An authenticated connection's auth refused by the edge gets rate_limited only."""
    driven = Driven()
    driven.authenticate()
    driven.gate.may_try = False
    actions = driven.send({"type": "auth", "token": token()})
    assert code_of(actions) == "rate_limited"
    assert not [action for action in actions if isinstance(action, Close)]


def test_too_many_connections_for_the_user() -> None:
    """A user at RT_MAX_CONNECTIONS_PER_USER gets rate_limited, then 4429."""
    driven = Driven()
    driven.open()
    driven.gate.admits = False
    actions = driven.send({"type": "auth", "token": token()})
    assert code_of(actions) == "rate_limited"
    assert actions[-1] == Close(CloseCode.RATE_LIMITED, "too many connections for this user")
    assert driven.session.user is None


def test_a_bearer_token_authenticates_at_open() -> None:
    """A valid Authorization header's token is welcomed at once, with ref null."""
    driven = Driven()
    actions = driven.open(token())
    assert messages(actions)[0]["type"] == "welcome"
    assert messages(actions)[0]["ref"] is None


def test_an_invalid_bearer_token_closes_with_4401() -> None:
    """An invalid header token is refused, then the connection closed with 4401."""
    driven = Driven()
    actions = driven.open("not-a-jwt")
    assert messages(actions)[0]["error"]["code"] == "unauthenticated"
    assert actions[-1] == Close(CloseCode.UNAUTHENTICATED, "invalid token")


def _revocation(user: str | None = None, jti: str | None = None) -> Revocation:
    # Made a minute from now: the token's iat, in whole seconds, is surely before it.
    later = now_ms() + 60_000
    return Revocation(user, jti, later, later + 60_000)


@pytest.mark.parametrize(
    ("names", "closes"),
    [
        pytest.param({"user": "alice"}, True, id="the-user"),
        pytest.param({"user": "bob"}, False, id="another-user"),
        pytest.param({"jti": "j-1"}, True, id="the-token"),
        pytest.param({"jti": "j-2"}, False, id="another-token"),
    ],
)
def test_revocation_closes_only_the_connections_it_refuses(
    names: dict[str, str], closes: bool
) -> None:
    """A revocation matching the current token closes with 4401 revoked; others do nothing."""
    driven = Driven()
    driven.authenticate(jti="j-1")
    revocation = _revocation(**names)
    expected = [Close(CloseCode.UNAUTHENTICATED, "revoked")] if closes else []
    assert driven.session.revoke(revocation) == expected


def test_revocation_ignores_an_unauthenticated_connection() -> None:
    """A connection with no token yet has nothing to revoke."""
    driven = Driven()
    driven.open()
    assert driven.session.revoke(_revocation(user="alice")) == []
