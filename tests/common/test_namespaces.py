"""Channel names, and their namespaces in a registry of the built-in services."""

from __future__ import annotations

import pytest

from common.errors import ErrorCode, ProtocolError
from common.namespaces import Access
from tests.support.registry import BUILT_IN_OFFERS, registry_of


REGISTRY = registry_of(BUILT_IN_OFFERS.values())
NAMESPACES = REGISTRY.namespaces
parse_channel = REGISTRY.channel


@pytest.mark.parametrize(
    ("channel", "namespace"),
    [
        ("chat:lobby", "chat"),
        ("chat:room_42", "chat"),
        ("auction:lot-7", "auction"),
        ("auction:2024.spring:lot-1", "auction"),
        ("presence:chat:lobby", "presence"),
        ("chat:" + "n" * 200, "chat"),
        ("chat:A", "chat"),
    ],
)
def test_valid_channels_name_their_namespace(channel: str, namespace: str) -> None:
    """A well-formed channel of a known namespace parses to that namespace's entry."""
    assert parse_channel(channel) is NAMESPACES[namespace]


@pytest.mark.parametrize(
    "channel",
    [
        "",
        "chat",
        "chat:",
        ":lobby",
        "Chat:lobby",
        "1chat:lobby",
        "chat:with space",
        "chat:slash/name",
        "chat:émoji",
        "chat:lobby\n",
        "chat:*",
        "chat:" + "n" * 201,
        "a" * 33 + ":lobby",
    ],
)
def test_malformed_channels_are_invalid_channel(channel: str) -> None:
    """A name not of the form <namespace>:<1-200 safe characters> is refused as invalid_channel."""
    with pytest.raises(ProtocolError) as caught:
        parse_channel(channel)
    assert caught.value.code is ErrorCode.INVALID_CHANNEL


def test_unknown_namespace_is_invalid_channel_and_lists_the_known_ones() -> None:
    """A well-formed name of an unknown namespace is refused, naming the namespaces there are."""
    with pytest.raises(ProtocolError) as caught:
        parse_channel("weather:paris")
    assert caught.value.code is ErrorCode.INVALID_CHANNEL
    assert "'weather'" in caught.value.message
    for name in NAMESPACES:
        assert name in caught.value.message


@pytest.mark.parametrize("channel", [None, 7, ["chat:lobby"], {"chat": "lobby"}, b"chat:lobby"])
def test_channel_that_is_not_a_string_is_a_bad_request(channel: object) -> None:
    """A channel of the wrong JSON type is a bad_request, not an invalid name."""
    with pytest.raises(ProtocolError) as caught:
        parse_channel(channel)
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_built_in_namespaces() -> None:
    """Each built-in namespace names its owning service, its access rule and whether it keeps
    history, as its service announces it."""
    assert (NAMESPACES["chat"].service, NAMESPACES["chat"].access) == ("chat", Access.OWNER)
    assert NAMESPACES["chat"].history
    assert NAMESPACES["auction"].service == "bids"
    assert NAMESPACES["auction"].access is Access.AUTHENTICATED
    assert NAMESPACES["auction"].history
    assert NAMESPACES["presence"].service == "presence"
    assert NAMESPACES["presence"].access is Access.AUTHENTICATED
    assert not NAMESPACES["presence"].history
    assert all(name == ns.name for name, ns in NAMESPACES.items())
    assert (NAMESPACES["chat"].presence, NAMESPACES["auction"].presence) == (True, True)
    assert not NAMESPACES["presence"].presence
