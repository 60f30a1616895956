"""One client connection: the asyncio shell around its session (:mod:`.session`).

The session decides; this runs what it decided, in order: frames to the outbox, requests to
the router, joins on the hub, the one timer on the event loop. Outcomes (replies, a join
confirmed or timed out, the timer) go back to the session, whose answer is run in turn.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from common.codec import dump_client
from common.envelope import Reply
from common.errors import CloseCode
from common.partitions import channel_entity
from common.revocation import Revocation
from realtime_gateway.frames import text_frame
from realtime_gateway.gateway import Gateway
from realtime_gateway.limits import Ticket
from realtime_gateway.session import (
    PRESENCE,
    Action,
    Activate,
    AskOwner,
    Call,
    CatchUp,
    Close,
    Join,
    Joining,
    Leave,
    Notify,
    Send,
    ServerJoin,
    Session,
    StartTimer,
    StopTimer,
)
from realtime_gateway.tasks import spawn
from realtime_gateway.wsproto import Outbox


__all__ = ["Connection"]


class Connection:
    """The gateway's side of one WebSocket connection.

    Outbound frames all go through :attr:`outbox`, in the order they are produced.
    """

    # Slots: ten thousand idle connections are ten thousand of these.
    __slots__ = ("_gateway", "_timer", "id", "outbox", "session")

    def __init__(self, gateway: Gateway, outbox: Outbox, ticket: Ticket | None = None) -> None:
        self._gateway = gateway
        self.outbox = outbox
        self.id = gateway.next_connection_id()
        self.session = Session(
            gateway.settings, gateway, outbox, self.id, ticket, now=time.monotonic()
        )
        self._timer: asyncio.TimerHandle | None = None

    @property
    def user(self) -> str | None:
        return self.session.user

    def open(self, bearer: str | None) -> None:
        """Start the session, authenticated by ``bearer`` (a header's token) if given."""
        self._run(self.session.open(bearer))

    def close(self, code: CloseCode, reason: str) -> None:
        self.outbox.close(code, reason)

    async def receive_text(self, text: str) -> None:
        """Handle one text frame from the client; a subscribe is awaited until joined."""
        join = self._run(self.session.receive_text(text, time.monotonic()))
        if join is None:
            return
        try:
            # Bounded: while Redis is down the bus cannot confirm, and this connection's
            # other messages (pings too) wait behind the subscribe.
            async with asyncio.timeout(self._gateway.settings.request_timeout):
                await self._gateway.hub.join(join.channel, self, pending=join.pending)
        except TimeoutError:
            self._run(self.session.join_timed_out(join))
            return
        self._run(self.session.joined(join))

    def receive_binary(self) -> None:
        self._run(self.session.receive_binary(time.monotonic()))

    def revoked_by(self, revocation: Revocation) -> bool:
        """Close the connection if ``revocation`` refuses its current token."""
        actions = self.session.revoke(revocation)
        self._run(actions)
        return bool(actions)

    def finish(self, close_code: int | None = None) -> None:
        """Release everything the connection holds, once it is gone."""
        actions = self.session.finish(close_code)
        self.outbox.lost()
        self._run(actions)

    # Running the session's actions.

    def _run(self, actions: list[Action]) -> Join | None:
        """Run ``actions`` in order; return the client's subscribe to await, if any."""
        gateway = self._gateway
        join = None
        for action in actions:
            # The most frequent first: this is every request's and every reply's path.
            if isinstance(action, Send):
                if self.outbox.send(text_frame(dump_client(action.message))):
                    gateway.metrics.messages_out.inc()
            elif isinstance(action, Call):
                on_reply = partial(self._answered, action)
                gateway.router.request(
                    self, action.service, action.type, action.data, on_reply, prior=action.prior
                )
            else:
                join = self._run_other(action) or join
        return join

    def _run_other(self, action: Action) -> Join | None:
        gateway = self._gateway
        match action:
            case Close():
                self.outbox.close(action.code, action.reason)
            case Notify():
                gateway.router.notify(
                    self, PRESENCE, action.kind, action.data, partition=action.partition
                )
            case Activate():
                gateway.hub.activate(action.channel, self, after=action.after)
            case Leave():
                gateway.hub.leave(action.channel, self)
            case Join():
                return action
            case AskOwner():
                on_answer = partial(self._owner_answered, action)
                service, data = action.service, action.data
                entity = channel_entity(action.channel)
                gateway.router.request(self, service, "subscribe", data, on_answer, entity=entity)
            case ServerJoin():
                spawn(self._join_all(action.joining))
            case CatchUp():
                gateway.hub.catch_up(action.channel, self, action.since)
            case StartTimer():
                self._start_timer(action)
            case StopTimer():
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
        return None

    def _answered(self, call: Call, reply: Reply | None, why: str) -> None:
        self._run(self.session.answered(call, reply, why))

    def _owner_answered(self, ask: AskOwner, reply: Reply | None, why: str) -> None:
        self._run(self.session.owner_answered(ask, reply, why))

    async def _join_all(self, joining: Joining) -> None:
        """A server-side subscription (``chat.join``): join each channel, then reply."""
        hub = self._gateway.hub
        while (channel := self.session.next_join(joining)) is not None:
            await hub.join(channel, self, pending=True)
        self._run(self.session.joins_done(joining))

    def _start_timer(self, timer: StartTimer) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = timer.delay if timer.wall is None else max(0.0, timer.wall - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._run(self.session.timer_fired())
