"""The error and close code tables and the exception tree."""

from __future__ import annotations

import pytest

from common.errors import (
    CLOSE_RECONNECT,
    CloseCode,
    ConfigError,
    ErrorCode,
    ProtocolError,
    RealtimeError,
    ServiceError,
)


def test_every_close_code_says_whether_to_reconnect() -> None:
    """CLOSE_RECONNECT has an entry for each close code and for nothing else."""
    assert set(CLOSE_RECONNECT) == set(CloseCode)
    assert all(isinstance(value, bool) for value in CLOSE_RECONNECT.values())


def test_close_codes_are_standard_or_in_the_application_range() -> None:
    """Close codes are registered RFC 6455 codes (1000-1015) or application codes (4000-4999)."""
    for code in CloseCode:
        assert 1000 <= code <= 1015 or 4000 <= code <= 4999, code
        assert code not in (1004, 1005, 1006, 1015), f"{code} must not be sent in a close frame"


def test_application_close_codes_are_in_4000_to_4999() -> None:
    """Every close code the project defines itself lies in the private-use range."""
    application = [code for code in CloseCode if code >= 3000]
    assert application, "the table defines application codes"
    assert all(4000 <= code <= 4999 for code in application)


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (CloseCode.NORMAL, False),
        (CloseCode.SERVICE_RESTART, True),
        (CloseCode.TRY_AGAIN_LATER, True),
        (CloseCode.UNAUTHENTICATED, False),
        (CloseCode.FORBIDDEN, False),
        (CloseCode.SLOW_CONSUMER, True),
    ],
)
def test_reconnect_semantics_of_key_codes(code: CloseCode, reconnect: bool) -> None:
    """A restart or overload invites a reconnect; bad credentials and normal closes do not."""
    assert CLOSE_RECONNECT[code] is reconnect


def test_close_code_values_are_the_protocol_ones() -> None:
    """The close codes keep the numbers documented in protocol v1."""
    assert sorted(int(code) for code in CloseCode) == [
        1000, 1001, 1008, 1009, 1011, 1012, 1013, 4401, 4403, 4408, 4429,
    ]  # fmt: skip


def test_error_codes_are_unique_snake_case_strings() -> None:
    """Error codes are distinct lowercase identifiers that compare equal to their strings."""
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))
    for code in ErrorCode:
        assert code.value.isidentifier()
        assert code.value == code.value.lower()
        assert code == code.value


def test_exception_tree() -> None:
    """Project exceptions derive from RealtimeError; config and protocol ones are ValueErrors."""
    assert issubclass(ConfigError, RealtimeError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ProtocolError, RealtimeError)
    assert issubclass(ProtocolError, ValueError)
    assert issubclass(ServiceError, RealtimeError)
    assert not issubclass(ServiceError, ValueError)


def test_protocol_error_carries_code_and_message() -> None:
    """A ProtocolError exposes its code and message, and str() is the message."""
    error = ProtocolError(ErrorCode.INVALID_CHANNEL, "bad channel")
    assert error.code is ErrorCode.INVALID_CHANNEL
    assert error.message == "bad channel"
    assert str(error) == "bad channel"


def test_service_error_to_error_carries_details_code_and_message() -> None:
    """to_error merges the details with code and message into one error object."""
    error = ServiceError("bid_too_low", "the minimum bid is 13", minimum=13, currency="EUR")
    assert error.to_error() == {
        "code": "bid_too_low",
        "message": "the minimum bid is 13",
        "minimum": 13,
        "currency": "EUR",
    }
    assert str(error) == "the minimum bid is 13"


def test_service_error_code_may_be_an_error_code_member() -> None:
    """An ErrorCode member becomes its plain string value in the error object."""
    error = ServiceError(ErrorCode.NOT_FOUND, "no such room")
    wire = error.to_error()
    assert wire["code"] == "not_found"
    assert type(wire["code"]) is str
