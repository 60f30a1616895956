"""Lines a terminal showed, matched against the README's.

Values the system makes anew each run (tokens, connection and gateway ids, positions, message
ids, times) cannot match; :class:`Bindings` ties each README value to the value seen in its
place, the first time, and requires the same README value to stand for the same seen value
everywhere after (and two README values for two seen values). Typed lines are sent with their
bound values substituted, so a ``since`` typed in the README is the position seen in this run.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.wscat.readme import Line, Mismatch


__all__ = ["VOLATILE", "Bindings", "match_line"]

#: Fields whose values are made by the system each run (bound, not compared).
VOLATILE = frozenset(
    {"token", "connection", "gateway", "id", "ts", "position", "since", "ends_at", "placed_at"}
)
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


class Bindings:
    """README value ↔ value seen this run, one to one, per section."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, Any], Any] = {}
        self._readme: dict[tuple[str, Any], Any] = {}

    def bind(self, expected: Any, actual: Any, where: str) -> None:
        if type(expected) is not type(actual):
            raise Mismatch(f"{where}: expected a {type(expected).__name__}, got {actual!r}")
        key, back = (type(expected).__name__, expected), (type(actual).__name__, actual)
        if key in self._seen:
            if self._seen[key] != actual:
                raise Mismatch(
                    f"{where}: the README's {expected!r} was {self._seen[key]!r} before, "
                    f"now {actual!r}"
                )
            return
        if back in self._readme:
            raise Mismatch(
                f"{where}: {actual!r} stands for the README's {self._readme[back]!r} already, "
                f"not for {expected!r}"
            )
        self._seen[key], self._readme[back] = actual, expected

    def substitute(self, value: Any) -> Any:
        """``value`` with every README value already bound replaced by what it stood for."""
        return self._seen.get((type(value).__name__, value), value)

    def compare(self, expected: Any, actual: Any, where: str, key: str = "") -> None:
        """Structural equality (object keys in order), binding the values of volatile fields."""
        if key in VOLATILE and not isinstance(expected, list | dict) and expected is not None:
            self.bind(expected, actual, f"{where} field {key!r}")
            return
        if isinstance(expected, list) and expected and isinstance(expected[0], tuple):
            if not (isinstance(actual, list) and all(isinstance(a, tuple) for a in actual)):
                raise Mismatch(f"{where}: expected an object, got {actual!r}")
            if [k for k, _ in expected] != [k for k, _ in actual]:
                raise Mismatch(
                    f"{where}: keys {[k for k, _ in actual]} instead of {[k for k, _ in expected]}"
                )
            for (name, value), (_, seen) in zip(expected, actual, strict=True):
                self.compare(value, seen, f"{where}.{name}", name)
            return
        if isinstance(expected, list):
            if not isinstance(actual, list) or len(actual) != len(expected):
                raise Mismatch(f"{where}: expected {len(expected)} items, got {actual!r}")
            for n, (value, seen) in enumerate(zip(expected, actual, strict=True)):
                self.compare(value, seen, f"{where}[{n}]", key)
            return
        if type(expected) is not type(actual) or expected != actual:
            raise Mismatch(f"{where}: expected {expected!r}, got {actual!r}")

    def typed(self, text: str) -> str:
        """A typed README line as this run must send it: bound volatile values replaced."""
        try:
            value = json.loads(text)
        except ValueError:
            return text  # sent as written (the README types malformed JSON on purpose)
        if not isinstance(value, dict) or _compact(value) != text:
            return text
        return _compact(
            {
                name: self.substitute(field) if name in VOLATILE else field
                for name, field in value.items()
            }
        )


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _pairs(text: str) -> Any:
    """JSON with every object as a list of (key, value) pairs, so that key order counts."""
    return json.loads(text, object_pairs_hook=list)


def match_line(expected: Line, actual: str, bindings: Bindings) -> None:
    """Check one line a terminal showed against the README's line."""
    where = f"README line {expected.number}"
    if expected.kind == ">":
        wanted = "> " + bindings.typed(expected.text)
        if actual != wanted:
            raise Mismatch(f"{where}: the terminal echoed {actual!r}, not {wanted!r}")
        return
    if expected.kind == "<":
        if not actual.startswith("< "):
            raise Mismatch(f"{where}: expected a received frame, got {actual!r}")
        try:
            seen = _pairs(actual[2:])
        except ValueError:
            raise Mismatch(f"{where}: {actual!r} is not JSON") from None
        bindings.compare(_pairs(expected.text), seen, f"{where} ({actual[2:]})")
        return
    try:
        wanted_value = _pairs(expected.text)
    except ValueError:
        wanted_value = None
    if isinstance(wanted_value, list):  # command output that is a JSON object
        try:
            seen_value = _pairs(actual)
        except ValueError:
            raise Mismatch(f"{where}: {actual!r} is not JSON") from None
        bindings.compare(wanted_value, seen_value, f"{where} ({actual})")
    elif _JWT.match(expected.text):
        bindings.bind(expected.text, actual, f"{where} (a token)")
    elif actual != expected.text:
        raise Mismatch(f"{where}: expected {expected.text!r}, got {actual!r}")
